"""What goes into the image as code, and where: one layout for both modes.

The shipped tree lands at CODE_DIR, the container's working directory and on its PYTHONPATH,
so the user's package imports from it and `data/train.csv` opens as it does in the repository.
`image.code: git` ships one commit's tree (exported with `git archive`), `local` the working
tree as git sees it (tracked, and untracked but not ignored); both leave out CODE_IGNORE and
what `.launchignore` names (gitignore syntax). The plan, the image and `--local --shipped` all
read the same list from `shipped_*`, so what the plan counts is what the image gets.

The generated app imports `ship_filter` (at deploy time, and inside the container, where it
reads nothing), so this module keeps to the standard library and imports pathspec and modal
lazily.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from launcher.errors import RunError
from launcher.gitinfo import git

CODE_DIR = "/opt/project"  # the shipped tree in the container: its working directory
IGNORE_FILE = ".launchignore"
# Above this, every image build spends noticeable time uploading the code: the plan warns.
LARGE_BYTES = 100 * 2**20
# Left out of both modes, in gitignore syntax relative to the repository root. `launcher` ships
# on its own (the package that rendered the app), so a checkout of launcher itself does not
# send it twice.
CODE_IGNORE = [
    "/.git", "/.launch", "/launcher",
    "**/__pycache__", "**/*.pyc", "**/*.egg-info", "**/.DS_Store",
    "**/.venv", "**/venv", "**/.tox", "**/.nox",
    "**/.mypy_cache", "**/.pytest_cache", "**/.ruff_cache", "**/.hypothesis", "**/.ipynb_checkpoints",
]


@dataclass(frozen=True)
class Shipped:
    files: dict[str, int]  # path relative to the tree (posix) -> size in bytes
    ignore_rules: int  # how many patterns .launchignore added to CODE_IGNORE

    @property
    def total(self) -> int:
        return sum(self.files.values())

    def largest(self, count: int = 3) -> list[tuple[str, int]]:
        return sorted(self.files.items(), key=lambda item: (-item[1], item[0]))[:count]


def _rules(ignore_text: str | None) -> list[str]:
    lines = (ignore_text or "").splitlines()
    return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]


def select(files: dict[str, int], ignore_text: str | None) -> Shipped:
    """`files` less CODE_IGNORE and the `.launchignore` rules, read as git reads .gitignore."""
    import pathspec

    rules = _rules(ignore_text)
    spec = pathspec.GitIgnoreSpec.from_lines([*CODE_IGNORE, *rules])
    venvs = _venv_dirs(files)
    kept = {path: size for path, size in files.items()
            if not spec.match_file(path) and not any(path.startswith(v) for v in venvs)}
    return Shipped(dict(sorted(kept.items())), len(rules))


def _venv_dirs(files: Iterable[str]) -> list[str]:
    """Folders that hold a virtualenv (a pyvenv.cfg), by any name: never code."""
    return [path.removesuffix("pyvenv.cfg") for path in files
            if path == "pyvenv.cfg" or path.endswith("/pyvenv.cfg")]


def shipped_commit(root: Path, sha: str) -> Shipped:
    """What `image.code: git` ships of commit `sha`, read from git (nothing is exported)."""
    listing = git(root, "ls-tree", "-r", "-l", "-z", "--full-tree", sha, strip=False) or ""
    files = {}
    for entry in filter(None, listing.split("\0")):
        meta, _, path = entry.partition("\t")
        kind, size = meta.split()[1], meta.split()[3]
        if kind == "blob":  # submodules (commit entries) are not in git archive's output either
            files[path] = int(size)
    return select(files, git(root, "show", f"{sha}:{IGNORE_FILE}", strip=False))


def shipped_tree(root: Path) -> Shipped:
    """What `image.code: local` ships of the folder `root`: in git, the files git shows
    (tracked, and untracked but not ignored); outside git, every file."""
    listed = git(root, "ls-files", "--cached", "--others", "--exclude-standard", "-z", strip=False)
    names = [n for n in (listed or "").split("\0") if n] if listed is not None else list(_walk(root))
    files = {}
    for name in names:
        path = root / name
        if path.is_file() or path.is_symlink():  # git lists tracked files deleted since too
            files[name] = path.lstat().st_size
    ignore = root / IGNORE_FILE
    return select(files, ignore.read_text("utf-8") if ignore.is_file() else None)


def _walk(root: Path) -> Iterable[str]:
    """Every file under `root`, a symlink to a folder included as the link it is (as git and
    `git archive` keep it)."""
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in (".git", ".launch")]
        links = [d for d in dirs if (Path(folder) / d).is_symlink()]
        for name in [*names, *links]:
            yield (Path(folder) / name).relative_to(root).as_posix()


def ship_filter(root: Path, mode: str) -> Callable[[Path], bool]:
    """The `ignore=` of the app's `add_local_dir` for the tree at `root`: True for a path that
    does not ship (a folder ships when a shipped file is under it). Asked where the app is
    deployed; inside the container nothing is uploaded and nothing is read."""
    import modal

    if not modal.is_local():
        return lambda path: False
    files = set((shipped_commit_folder(root) if mode == "git" else shipped_tree(root)).files)
    folders = {str(parent) for f in files for parent in Path(f).parents}
    return lambda path: (key := path.as_posix()) not in files and key not in folders


def shipped_commit_folder(folder: Path) -> Shipped:
    """What ships of a commit exported into `folder` (the same list as `shipped_commit`)."""
    ignore = folder / IGNORE_FILE
    files = {name: (folder / name).lstat().st_size for name in _walk(folder)}
    return select(files, ignore.read_text("utf-8") if ignore.is_file() else None)


def lay_out(source: Path, shipped: Shipped, target: Path) -> Path:
    """Copy the shipped files of `source` into an emptied `target`: the tree as the image
    gets it, for `launch --local --shipped`."""
    shutil.rmtree(target, ignore_errors=True)
    try:
        for name in shipped.files:
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, target / name, follow_symlinks=False)
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"{target}: cannot lay out the shipped code: {exc.strerror or exc}") from None
    return target


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
