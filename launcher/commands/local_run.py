"""`launch JOB --local`: render the app and run it here under the local supervisor."""

from __future__ import annotations

from launcher import gitinfo
from launcher.backends.local import Options, run_local
from launcher.backends.pipeline import run_pipeline_local
from launcher.codesource import CodeSource
from launcher.load import load_spec
from launcher.render import render
from launcher.spec.pipeline import check_rerun


def local(job: str, sets: tuple[str, ...], options: Options) -> int:
    loaded = load_spec(job, sets)
    check_rerun(job, loaded.spec, options.rerun)
    # The repository's root (git's top level, else the working directory) holds .launch/.
    repo = gitinfo.find_repo(loaded.path.resolve())
    # Locally the code is this working tree, whatever image.code says.
    app = render(loaded.spec, loaded.source, CodeSource("local"))
    if loaded.spec.stages:
        return run_pipeline_local(loaded.spec, app, repo.root, options)
    return run_local(loaded.spec, app, repo.root, options)
