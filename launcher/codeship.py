"""What goes into the image as code: the repository as git sees it (`image.code: local`), or one
commit's tree exported with `git archive` (`image.code: git`).

The generated app imports `code_ignore` (at deploy time, and inside the container, where it only
builds the matcher), so this module keeps to the standard library and imports modal lazily.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from launcher.errors import RunError
from launcher.gitinfo import git

# Left out of `code: local`, in Modal's dockerignore-style patterns relative to the repository
# root, besides what .gitignore excludes. `launcher` ships on its own (the package that rendered
# the app), so a checkout of launcher itself does not send it twice.
CODE_IGNORE = [
    ".git", ".launch", "launcher",
    "**/__pycache__", "**/*.pyc", "**/*.egg-info", "**/.DS_Store",
    "**/.venv", "**/venv", "**/.tox", "**/.nox",
    "**/.mypy_cache", "**/.pytest_cache", "**/.ruff_cache", "**/.hypothesis", "**/.ipynb_checkpoints",
]

_GLOB = re.compile(r"([*?\[\]\\])")


def literal(path: str) -> str:
    """A pattern that matches exactly `path`: glob characters and a leading `!` escaped."""
    escaped = _GLOB.sub(r"\\\1", path)
    return "\\" + escaped if escaped.startswith("!") else escaped


def ignored_paths(root: Path) -> list[str]:
    """Exact patterns for the untracked paths git ignores (.gitignore, .git/info/exclude, the
    global excludes file: git lists them, whole folders at once) and for virtualenvs by any name."""
    listed = git(root, "ls-files", "--others", "--ignored", "--exclude-standard", "--directory", "-z",
                 strip=False)  # a name may start or end with a space
    paths = [p.rstrip("/") for p in (listed or "").split("\0") if p]
    venvs = sorted(d.name for d in root.iterdir() if (d / "pyvenv.cfg").is_file()) if root.is_dir() else []
    return [literal(p) for p in paths + venvs]


def code_ignore(root: Path, patterns: Sequence[str]) -> Any:
    """The matcher a `code: local` app passes to `Image.add_local_dir`: `patterns`, plus what
    git ignores, asked where the app is deployed (inside the container nothing is uploaded)."""
    import modal

    extra = ignored_paths(root) if modal.is_local() else []
    return modal.FilePatternMatcher(*patterns, *extra)


def export(root: Path, sha: str) -> Path:
    """`.launch/code/<sha>/`: the commit's tree from `git archive`, written once (a commit never
    changes), atomically, so the image needs no access to the git host."""
    target = root / ".launch" / "code" / sha
    if target.is_dir():
        return target
    partial = target.with_name(f".{sha}.{os.getpid()}.partial")
    try:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        _extract_archive(root, sha, partial)
        partial.rename(target)
    except OSError as exc:
        raise RunError(f"{target}: cannot export commit {sha[:12]}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


def _extract_archive(root: Path, sha: str, into: Path) -> None:
    archive = subprocess.Popen(["git", "-C", str(root), "archive", "--format=tar", sha],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert archive.stdout is not None and archive.stderr is not None
    # The "tar" filter (3.11.4+) refuses members outside the folder; git's own output is trusted.
    safe = {"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}
    unreadable: tarfile.TarError | None = None
    try:
        with tarfile.open(fileobj=archive.stdout, mode="r|") as tar:
            tar.extractall(into, **safe)
    except tarfile.TarError as exc:  # git failed mid-way (its own message says why), or worse
        unreadable = exc
    error = archive.stderr.read().decode(errors="replace").strip()
    if archive.wait() != 0:
        raise RunError(f"git archive {sha}: {error or 'failed'}")
    if unreadable is not None:
        raise RunError(f"git archive {sha}: unreadable archive: {unreadable}")
