"""Regenerate the expected outputs that tests compare with `==`; review the diff before committing.

    python tests/regen_golden.py          # tests/golden/<case>/app.py from spec.yaml
    python tests/regen_golden.py --bad    # also tests/specs/bad/<case>.expected

test_render.py renders through `render_case` below, so a golden is exactly what it checks.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

from launcher.cli import main
from launcher import gitinfo
from launcher.gitinfo import safe_url
from launcher.load import load_spec
from launcher.render import CodeSource, render
from launcher.spec.model import JobSpec

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
BAD = ROOT / "tests" / "specs" / "bad"


def golden_cases() -> list[str]:
    return sorted(p.parent.name for p in GOLDEN.glob("*/spec.yaml"))


def bad_cases() -> list[str]:
    return sorted(p.stem for p in BAD.glob("*.yaml"))


def code_source(spec: JobSpec, case: str) -> CodeSource:
    """The code a golden pins in its own spec (local, or git url + ref), as `resolve` would give
    it for a repository holding that commit: no git state involved."""
    if spec.image.code == "local":
        return CodeSource("local")
    git = spec.image.git
    if not (git.url and git.ref):
        raise ValueError(f"{spec.name}: a golden with code: git must set image.git.url and ref")
    return CodeSource("git", safe_url(git.url), git.ref)


def pinned_commits(monkeypatch) -> None:
    """This checkout holds none of the goldens' pinned commits: answer for them as a repository
    that does would (tests/test_gitinfo.py asks real repositories)."""
    pins = {load_spec(GOLDEN / c / "spec.yaml").spec.image.git.ref for c in golden_cases()}

    def lookup(repo: gitinfo.Repo, ref: str) -> gitinfo.Commit | None:
        return gitinfo.Commit(ref) if ref in pins else None

    monkeypatch.setattr(gitinfo, "lookup", lookup)


def render_case(case: str) -> str:
    """The app for tests/golden/<case>/spec.yaml, named as `launch` run from the repo root names it."""
    spec = load_spec(GOLDEN / case / "spec.yaml").spec
    return render(spec, f"tests/golden/{case}/spec.yaml", code_source(spec, case))


def check_bad(case: str) -> tuple[int, str]:
    """`launch check <case>.yaml` run inside tests/specs/bad: exit code and stderr."""
    err = io.StringIO()
    cwd = os.getcwd()
    os.chdir(BAD)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(["check", f"{case}.yaml"])
    finally:
        os.chdir(cwd)
    return code, err.getvalue()


CHECK_SUMMARY = "1 spec checked, 1 with problems\n"


def main_regen(argv: list[str]) -> int:
    for case in golden_cases():
        (GOLDEN / case / "app.py").write_text(render_case(case), "utf-8")
        print(f"wrote tests/golden/{case}/app.py")
    if "--bad" in argv:
        for case in bad_cases():
            code, err = check_bad(case)
            if code != 1 or not err.endswith(CHECK_SUMMARY):
                print(f"tests/specs/bad/{case}.yaml: exit {code}, not rejected:\n{err}", file=sys.stderr)
                return 1
            (BAD / f"{case}.expected").write_text(err[: -len(CHECK_SUMMARY)], "utf-8")
            print(f"wrote tests/specs/bad/{case}.expected")
    return 0


if __name__ == "__main__":
    sys.exit(main_regen(sys.argv[1:]))
