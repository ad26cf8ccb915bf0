"""`launch JOB --local`: render the app and run it here under the local supervisor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from launcher.backends.local import Options, run_local, start_worker
from launcher.spec.compose import compose


def local(job: str, sets: tuple[str, ...], options: Options) -> int:
    doc = compose(Path(job), tuple(sets), display=job)
    # The first worker starts now, with the environment the merged spec gives it, and spends
    # the time this process takes to validate and render on its own imports (seconds).
    early = start_worker(declared_env(doc.value), options)
    try:
        # Imported here, not above: their imports (jsonschema, Jinja) overlap the worker's too.
        from launcher import gitinfo
        from launcher.backends.pipeline import run_pipeline_local
        from launcher.codesource import CodeSource
        from launcher.render import render
        from launcher.spec.pipeline import check_rerun
        from launcher.spec.validate import check

        spec = check(doc).spec
        check_rerun(job, spec, options.rerun)
        # The repository's root (git's top level, else the working directory) holds .launch/.
        repo = gitinfo.find_repo(Path(job).resolve())
        # Locally the code is this working tree, whatever image.code says.
        app = render(spec, job, CodeSource("local"))
        if spec.stages:
            return run_pipeline_local(spec, app, repo.root, options, early=early)
        return run_local(spec, app, repo.root, options, early=early)
    finally:
        early.kill()  # refused, interrupted, or done: never left running
        options.snapshots.close()  # the run's snapshot processes too


def declared_env(doc: dict[str, Any]) -> dict[str, str]:
    """The merged spec's `env:` as written; validation decides later whether it stands (if it
    changes, the supervisor starts another worker)."""
    env = doc.get("env")
    if not isinstance(env, dict):
        return {}
    return {k: v for k, v in env.items() if isinstance(k, str) and isinstance(v, str)}
