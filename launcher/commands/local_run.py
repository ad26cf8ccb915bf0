"""`launch JOB --local`: render the app and run it here under the local supervisor."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from launcher.backends.local import Options, run_local, start_worker
from launcher.spec.compose import compose


def local(job: str, sets: tuple[str, ...], options: Options, shipped: bool = False,
          use_local_code: bool = False) -> int:
    """`shipped`: rehearse the code the image gets (see launcher.commands.shipped_run)."""
    doc = compose(Path(job), tuple(sets), display=job)
    # The first worker starts now, with the environment the merged spec gives it, and spends
    # the time this process takes to validate and render on its own imports (seconds).
    early = start_worker(declared_env(doc.value), options)
    try:
        # Imported here, not above: their imports (jsonschema, Jinja) overlap the worker's too.
        from launcher import gitinfo, repofiles
        from launcher.backends.pipeline import run_pipeline_local
        from launcher.codesource import CodeSource
        from launcher.render import render
        from launcher.spec.pipeline import check_rerun
        from launcher.spec.refs import use_root
        from launcher.spec.validate import check

        # The repository's root (git's top level, else the working directory) holds .launch/,
        # and the modules the spec names are imported from it, here and in every worker (the
        # early one is told in its go), wherever launch runs.
        repo = gitinfo.find_repo(Path(job).resolve())
        use_root(repo.root)
        options = replace(options, code_root=repo.root)
        spec = check(doc).spec
        check_rerun(job, spec, options.rerun)
        repofiles.require_inputs(doc, spec, repo.root)
        if shipped:
            from launcher.commands.shipped_run import lay_out_shipped

            code, workdir = lay_out_shipped(job, spec, repo, use_local_code)
            # The workers import from the shipped tree alone: never the repository, where an
            # untracked module would still be found.
            options = replace(options, workdir=workdir, code_root=None)
            app = render(spec, job, code)
        else:
            # Locally the code is this working tree, whatever image.code says.
            app = render(spec, job, CodeSource("local"))
        if spec.stages:
            return run_pipeline_local(spec, app, repo.root, options, early=early, source=job)
        return run_local(spec, app, repo.root, options, early=early, source=job)
    finally:
        early.kill()  # refused, interrupted, or done: never left running
        if options.workdir is not None:
            shutil.rmtree(options.workdir, ignore_errors=True)
        options.snapshots.close()  # the run's snapshot processes too


def declared_env(doc: dict[str, Any]) -> dict[str, str]:
    """The merged spec's `env:` as written; validation decides later whether it stands (if it
    changes, the supervisor starts another worker)."""
    env = doc.get("env")
    if not isinstance(env, dict):
        return {}
    return {k: v for k, v in env.items() if isinstance(k, str) and isinstance(v, str)}
