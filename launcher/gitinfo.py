"""What `image.code: git` pins: the repository's origin URL and commit, read with git itself."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from launcher.render import CodeSource
from launcher.spec.model import JobSpec


def _git(cwd: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True,
                             timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


@dataclass(frozen=True)
class Repo:
    root: Path  # the git work tree holding the spec; else the spec's folder
    head: str | None  # HEAD's commit, None outside git or before the first commit


def find_repo(start: Path) -> Repo:
    folder = start if start.is_dir() else start.parent
    found = (_git(folder, "rev-parse", "--show-toplevel", "HEAD") or "").splitlines()
    if not found:
        return Repo(folder.resolve(), None)
    head = found[1] if len(found) > 1 and len(found[1]) == 40 else None
    return Repo(Path(found[0]), head)


def dirty_files(root: Path) -> list[str]:
    """Tracked files changed and untracked files not ignored: what a pinned commit would miss."""
    status = _git(root, "status", "--porcelain")
    return [line[3:] for line in status.splitlines()] if status else []


@dataclass(frozen=True)
class ResolvedCode:
    source: CodeSource
    note: str | None = None  # why git could not be pinned (a dry run renders local code instead)


def resolve(spec: JobSpec, repo: Repo, use_local_code: bool) -> ResolvedCode:
    if use_local_code or spec.image.code == "local":
        return ResolvedCode(CodeSource("local"))
    url = spec.image.git.url or _git(repo.root, "remote", "get-url", "origin")
    commit = spec.image.git.ref or repo.head
    if url and commit:
        return ResolvedCode(CodeSource("git", url, commit))
    missing = "no origin remote" if not url else "no commit yet"
    return ResolvedCode(CodeSource("local"), f"image.code is git, but this repository has {missing}; "
                                             "set image.git.url/ref, or pass --use-local-code")
