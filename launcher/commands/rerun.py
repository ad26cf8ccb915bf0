"""`launch rerun RUN --local`: the recorded resolved spec, trained again from step 0 with the
code the run had (its commit, and its uncommitted changes when it ran with some).

The code is not checked out for the user: a working tree at another commit, or with other
uncommitted changes, is refused in one line that says what to check out. The earlier
checkpoints are moved aside (as `--fresh` does); the job's run records stay.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from launcher import gitinfo
from launcher.errors import RunError
from launcher.registry import Where, find
from launcher.runtime.runs.lookup import FolderSource

DIFF = "code.diff"


def _digest(text: str | None) -> str:
    return hashlib.sha256((text or "").encode()).hexdigest()


def check_code(run: str, code: dict[str, object], recorded_diff: str | None, repo: Path) -> None:
    """The working tree is the code the run had, or RunError saying what differs."""
    from launcher.backends.runinfo import code_state

    commit = code.get("commit")
    if not commit:
        return  # the run was made outside git: nothing to compare
    now, diff = code_state(repo, "local")
    if now["commit"] != commit:
        raise RunError(f"run {run} trained commit {str(commit)[:12]}, but HEAD is "
                       f"{str(now['commit'])[:12]}: `git checkout {str(commit)[:12]}` (with its "
                       "changes, if it had any), then rerun")
    if bool(now["dirty"]) != bool(code.get("dirty")) or _digest(diff) != _digest(recorded_diff):
        said = ("had uncommitted changes that the working tree does not have (they are kept "
                f"beside its record, as {DIFF}: `git apply` them)" if code.get("dirty") else
                "had no uncommitted changes, and the working tree has some (commit or set them aside)")
        raise RunError(f"run {run} {said}; its code cannot be trained again as it was")


def rerun(prefix: str, where: Where, debug: bool) -> int:
    if not where.local:
        raise RunError("launch rerun: runs on Modal are rerun with `launch SPEC.yaml` at the recorded "
                       "commit for now; `launch rerun RUN --local` reruns a local run here")
    seen = find(prefix, where)
    record = seen.record
    assert isinstance(seen.found.source, FolderSource)
    run_folder = seen.found.source.root / seen.found.run_path()
    try:
        recorded_diff = (run_folder / DIFF).read_text("utf-8") if record.code.get("diff") else None
    except OSError:
        recorded_diff = None
    repo = gitinfo.find_repo(Path.cwd())
    check_code(record.run, record.code, recorded_diff, repo.root)

    from launcher.extras import require_runtime

    require_runtime("launch rerun")
    from launcher.backends.local import Options, run_local, start_worker
    from launcher.backends.pipeline import run_pipeline_local
    from launcher.codesource import CodeSource
    from launcher.render import render
    from launcher.spec.model import JobSpec
    from launcher.spec.refs import use_root

    spec = JobSpec.from_dict(record.spec)
    if spec.hash != record.spec_hash:
        raise RunError(f"run {record.run}: its recorded spec does not match its hash "
                       f"{record.spec_hash[:12]} (the record was changed); not rerun")
    use_root(repo.root)
    options = Options(volumes_dir=where.volumes or seen.found.source.root.parent, resume=False,
                      debug=debug, code_root=repo.root)
    source = f"rerun of {record.run} ({record.source or spec.name})"
    app = render(spec, source, CodeSource("local"))
    early = start_worker(spec.env, options)
    try:
        if spec.stages:
            return run_pipeline_local(spec, app, repo.root, options, early=early, source=source)
        return run_local(spec, app, repo.root, options, early=early, source=source)
    finally:
        early.kill()
        options.snapshots.close()
