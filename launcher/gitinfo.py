"""Git facts, read with git itself: the repository root, HEAD, a commit and its tree, the origin.

Standard library only: the generated app imports launcher.codeship, which uses this module,
at deploy time and inside the container.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path


def git(cwd: Path, *args: str, strip: bool = True) -> str | None:
    """git's output (stripped unless asked not to), or None when git is missing, fails or
    prints nothing."""
    try:
        out = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True,
                             timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() if strip else out.stdout) or None


@dataclass(frozen=True)
class Repo:
    root: Path  # the git work tree's top level; outside git, the folder launch runs in
    head: str | None  # HEAD's commit; None outside git or before the first commit
    in_git: bool = False
    # The folder find_repo was asked about (outside git, not the root): for messages only.
    asked: Path | None = field(default=None, compare=False)


def find_repo(start: Path) -> Repo:
    """The git work tree holding `start` (a file or folder), even before its first commit."""
    folder = start if start.is_dir() else start.parent
    top = git(folder, "rev-parse", "--show-toplevel")
    if top is None:
        return Repo(Path.cwd().resolve(), None, asked=folder)
    root = Path(top)
    return Repo(root, git(root, "rev-parse", "--verify", "--quiet", "HEAD^{commit}"), True)


def nearest_work_tree(start: Path) -> Path | None:
    """The nearest folder at or above `start` (a file or folder) that holds `.git` (a folder, or
    the file of a worktree or submodule): git's top level, found without running git, for what
    must stay fast (finding a spec's modules); None outside git."""
    folder = start.absolute() if start.is_dir() else start.absolute().parent
    return next((p for p in (folder, *folder.parents) if (p / ".git").exists()), None)


def dirty_files(root: Path) -> list[str]:
    """Tracked files changed and untracked files not ignored: what a pinned commit would miss."""
    # Unstripped: each line starts with two status columns, the first often a space (" M x").
    status = git(root, "status", "--porcelain", strip=False)
    return [line[3:] for line in status.splitlines()] if status else []


def origin_url(repo: Repo) -> str | None:
    return git(repo.root, "remote", "get-url", "origin") if repo.in_git else None


# user:token@ in a URL (the last @ before the path), and user@ in scp-like `user@host:path`.
_URL_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/]*@")
_SCP_USER = re.compile(r"^[^/]*@(?=[^/@]*:)")


def safe_url(url: str) -> str:
    """`url` as provenance: scheme, host and path only. CI remotes carry tokens in the user
    info (https://oauth2:glpat-...@host/...) or the query (...repo.git?access_token=...)."""
    bare = _URL_USERINFO.sub(r"\1", url) if "://" in url else _SCP_USER.sub("", url)
    return re.split(r"[?#]", bare, maxsplit=1)[0]  # a query or fragment is never provenance


@dataclass(frozen=True)
class Commit:
    sha: str


def lookup(repo: Repo, ref: str) -> Commit | None:
    """The commit `ref` names in this repository, or None when it names none (or outside git)."""
    if not repo.in_git:
        return None
    sha = git(repo.root, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
    return Commit(sha) if sha else None
