"""The spec's Dockerfile: it must exist, resolved from the repository root, and `launch init`
writes a starter one for a repository that has none."""

from __future__ import annotations

import tomllib
from pathlib import Path

from launcher import __version__
from launcher.errors import Problem, SpecError
from launcher.load import Loaded
from launcher.render import environment
from launcher.repofiles import inside
from launcher.runtimeship import UV_VERSION, installed_pins

DEFAULT = "Dockerfile.cuda"  # the schema's default for image.dockerfile


def init_command(dockerfile: str) -> str:
    return "launch init" if dockerfile == DEFAULT else f"launch init --dockerfile {dockerfile}"


def require(loaded: Loaded, root: Path) -> None:
    """Refuse a spec whose Dockerfile is missing, at image.dockerfile (or where it would go)."""
    name = loaded.spec.image.dockerfile
    path = root / name
    if path.is_file() and inside(root, path):
        return
    if path.is_file():  # a link out of the repository: the build would read what it points at
        raise SpecError([Problem(loaded.doc.where(("image", "dockerfile")), "$.image.dockerfile",
                                 f"{name!r} leads out of the repository ({root}) through a "
                                 "symbolic link: the Dockerfile and its build context stay "
                                 "inside it")])
    raise SpecError([Problem(loaded.doc.where(("image", "dockerfile")), "$.image.dockerfile",
                             f"no Dockerfile at {path} (image.dockerfile is relative to the "
                             f"repository root); `{init_command(name)}` writes a starter one")])


def dependency_files(root: Path) -> list[str]:
    """The files at `root` that the starter installs dependencies from, in the order it does."""
    found = []
    if _static_project(root / "pyproject.toml"):
        found.append("pyproject.toml")
        if (root / "uv.lock").is_file():
            found.append("uv.lock")
    if (root / "requirements.txt").is_file():
        found.append("requirements.txt")
    return found


def _static_project(pyproject: Path) -> bool:
    """A [project] table whose dependencies are listed in it (dynamic ones need the code)."""
    try:
        project = tomllib.loads(pyproject.read_text("utf-8")).get("project")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    return isinstance(project, dict) and "dependencies" not in project.get("dynamic", [])


def starter(root: Path, name: str = DEFAULT) -> str:
    """The starter Dockerfile `name` for the repository at `root`: a function of its files and
    of the runtime versions installed here."""
    sources = dependency_files(root)
    listed = " and ".join([", ".join(sources[:-1]), sources[-1]] if len(sources) > 1 else sources)
    torch, *runtime = installed_pins()
    return environment().get_template("Dockerfile.cuda.j2").render(
        version=__version__, sources=sources, listed=listed, uv_version=UV_VERSION, torch=torch,
        runtime=runtime, dockerfile=name)
