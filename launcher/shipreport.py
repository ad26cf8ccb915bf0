"""What the plan says about the code an image gets: how much ships, the largest files, what is
left out, and the uncommitted changes a pinned commit would miss."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from launcher import codeship, gitinfo
from launcher.codesource import CodeSource
from launcher.spec.model import JobSpec


def size(count: int) -> str:
    """Bytes for a person: 812 B, 3.4 KiB, 120.0 MiB."""
    amount = float(count)
    for unit in ("B", "KiB", "MiB"):
        if amount < 1024 or unit == "MiB":
            return f"{count} B" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")


def shipped(code: CodeSource, root: Path) -> codeship.Shipped:
    """What the image will get: the pinned commit's tree, or this working tree."""
    if code.mode == "git" and code.git_commit:
        return codeship.shipped_commit(root, code.git_commit)
    return codeship.shipped_tree(root)


def ship_lines(ship: codeship.Shipped) -> list[str]:
    """The plan's lines under `code`: count, size, largest files, what is left out, and a warning
    when every image build would upload a lot."""
    largest = ", ".join(f"{path} {size(n)}" for path, n in ship.largest())
    rules = (f"{codeship.IGNORE_FILE} ({ship.ignore_rules} rule{'s' if ship.ignore_rules != 1 else ''})"
             if ship.ignore_rules else f"{codeship.IGNORE_FILE} (none: add one to leave more out)")
    lines = [f"  ships     {len(ship.files)} files, {size(ship.total)}"
             + (f"; largest {largest}" if largest else ""),
             f"  left out  .git, .launch, launcher (shipped on its own), caches and virtualenvs, "
             f"and {rules}"]
    if ship.total > codeship.LARGE_BYTES:
        lines.append(f"warning: the shipped code is {size(ship.total)}: every image build uploads it; "
                     f"leave data and outputs out with {codeship.IGNORE_FILE} (gitignore syntax) and "
                     "read them from a volume")
    return lines


def _module_paths(module: str) -> tuple[str, str]:
    """`mypkg.recipes` -> (`mypkg/recipes`, `mypkg`): the module's path stem and its top-level
    package, relative to the repository root."""
    parts = module.split(".")
    return "/".join(parts), parts[0]


def unshipped_changes(spec: JobSpec, spec_files: list[Path], root: Path) -> list[str]:
    """Uncommitted files that matter to the job, which a pinned HEAD would not ship: the spec
    (and the files it extends), the recipe's and stages' modules, and anything under their
    top-level packages."""
    modules = [ref.split(":")[0] for ref in [spec.train.recipe, *(s.run for s in spec.stages)]]
    stems = {stem for m in modules for stem in _module_paths(m)}
    specs = set()
    for path in spec_files:
        try:
            specs.add(path.resolve().relative_to(root.resolve()).as_posix())
        except ValueError:
            continue  # outside the repository: not part of the commit anyway
    dirty = [f for f in gitinfo.dirty_files(root) if f in specs or _under(f, stems)]
    # What the image leaves out (launcher's own package ships from the installation) is missed
    # by no commit.
    ignore = root / codeship.IGNORE_FILE
    kept = codeship.select(dict.fromkeys(dirty, 0), ignore.read_text("utf-8") if ignore.is_file() else None)
    return [f for f in dirty if f in kept.files]


def _under(path: str, stems: set[str]) -> bool:
    pure = PurePosixPath(path.rstrip("/"))
    candidates = {pure.as_posix(), pure.with_suffix("").as_posix(), *(p.as_posix() for p in pure.parents)}
    return bool(candidates & stems)
