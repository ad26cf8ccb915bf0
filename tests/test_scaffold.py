"""The Dockerfile `launch init` writes, and launcher's own, read with a real Dockerfile parser:
Docker cannot build here, so each file is checked for what would break its build or ship the
wrong launcher: every COPY source exists in the build context (the repository root), every
install step names files an earlier COPY put where it runs, uv is pinned, no step installs the
launcher by name from an index, and the last step is an import check."""

from __future__ import annotations

import io
import re
import shlex
import subprocess
from pathlib import Path, PurePosixPath

import pytest
from dockerfile_parse import DockerfileParser

from launcher import dockerfile, runtimeship

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = '[project]\nname = "mypkg"\nversion = "1"\ndependencies = ["numpy"]\n'
# A requirement that would resolve the launcher by name: PyPI's `launcher` is another project.
LAUNCHER_BY_NAME = re.compile(r"^(modal-launcher|modal_launcher|launcher)\b", re.IGNORECASE)


def instructions(text: str) -> list[tuple[str, str]]:
    parser = DockerfileParser(fileobj=io.BytesIO(b""))
    parser.content = text
    return [(s["instruction"], s["value"]) for s in parser.structure if s["instruction"] != "COMMENT"]


def install_arguments(command: str) -> list[list[str]]:
    """The arguments of each `pip install` / `uv pip install` in a RUN command."""
    found = []
    for part in re.split(r"&&|;|\|", command):
        words = shlex.split(part)
        for i in range(len(words) - 1):
            if words[i] == "pip" and words[i + 1] == "install":
                found.append(words[i + 2:])
    return found


def problems(text: str, context: Path) -> list[str]:
    """What would break the build of `text` with `context` as its build context."""
    found, workdir, copied = [], PurePosixPath("/"), set()
    steps = instructions(text)
    for word, value in steps:
        if word == "WORKDIR":
            workdir = workdir / value
        elif word == "COPY":
            args = shlex.split(value)
            if args[0].startswith("--from="):
                if not re.fullmatch(r"--from=ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+", args[0]):
                    found.append(f"COPY {value}: not a pinned uv")
                continue
            *sources, target = args
            found += [f"COPY {s}: not in the build context" for s in sources if not (context / s).exists()]
            into = workdir / target
            copied |= {into / PurePosixPath(s).name for s in sources}
        elif word == "RUN":
            if "uv export" in value and {workdir / "pyproject.toml", workdir / "uv.lock"} - copied:
                found.append(f"RUN {value}: uv export without pyproject.toml and uv.lock")
            written = re.findall(r"uv export [^&;|]*-o (\S+)", value)  # a file the step itself writes
            copied |= {workdir / name for name in written}
            for args in install_arguments(value):
                for flag, name in zip(args, args[1:]):
                    if flag == "-r" and workdir / name not in copied:
                        found.append(f"RUN {value}: -r {name} was not copied to {workdir}")
                found += [f"RUN {value}: installs {a} by name" for a in args if LAUNCHER_BY_NAME.match(a)]
            if "astral.sh/uv/install.sh" in value:
                found.append(f"RUN {value}: uv from its installer, not pinned")
    if not steps or steps[-1][0] != "RUN" or not steps[-1][1].startswith('python -c "import '):
        found.append("the last step is not an import check")
    return found


CASES = [{}, {"pyproject.toml": PYPROJECT}, {"requirements.txt": "numpy\n"},
         {"pyproject.toml": PYPROJECT, "uv.lock": "version = 1\n", "requirements.txt": "numpy\n"}]


@pytest.mark.parametrize("files", CASES, ids=["none", "pyproject", "requirements", "all"])
def test_the_starter_builds_from_what_the_repository_holds(files: dict[str, str], tmp_path) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    text = dockerfile.starter(tmp_path)
    assert problems(text, tmp_path) == []
    copies = [v for w, v in instructions(text) if w == "COPY" and not v.startswith("--from")]
    assert [name for v in copies for name in shlex.split(v)[:-1]] == dockerfile.dependency_files(tmp_path)


def test_the_starter_pins_uv_and_the_runtime_it_was_written_with(tmp_path) -> None:
    steps = instructions(dockerfile.starter(tmp_path))
    assert ("COPY", f"--from=ghcr.io/astral-sh/uv:{runtimeship.UV_VERSION} /uv /uvx /usr/local/bin/") in steps
    installs = [args for w, v in steps if w == "RUN" for args in install_arguments(v)]
    pinned = [a for args in installs for a in args if not a.startswith("-") and "://" not in a]
    assert pinned == runtimeship.installed_pins()  # torch first, from PyTorch's CUDA index
    assert all("==" in pin for pin in pinned)  # the runtime is installed here (the dev extras)


def test_launchers_own_dockerfile_builds_from_this_checkout() -> None:
    text = (ROOT / "Dockerfile.cuda").read_text("utf-8")
    assert problems(text, ROOT) == []
    assert f"COPY --from=ghcr.io/astral-sh/uv:{runtimeship.UV_VERSION} " in text  # the app's uv too


def test_the_checker_sees_what_would_break_a_build(tmp_path) -> None:
    broken = ("FROM python:3.11\nRUN curl -LsSf https://astral.sh/uv/install.sh | sh\n"
              "COPY --from=ghcr.io/astral-sh/uv:latest /uv /usr/local/bin/\n"
              "WORKDIR /opt/deps\nCOPY requirements.txt ./\nRUN uv pip install --system -r other.txt\n"
              'RUN uv pip install --system "launcher[local]==0.1.0"\n')
    (tmp_path / "other.txt").write_text("")
    assert problems(broken, tmp_path) == [
        "RUN curl -LsSf https://astral.sh/uv/install.sh | sh: uv from its installer, not pinned",
        "COPY --from=ghcr.io/astral-sh/uv:latest /uv /usr/local/bin/: not a pinned uv",
        "COPY requirements.txt: not in the build context",
        "RUN uv pip install --system -r other.txt: -r other.txt was not copied to /opt/deps",
        'RUN uv pip install --system "launcher[local]==0.1.0": installs launcher[local]==0.1.0 by name',
        "the last step is not an import check"]


def test_init_writes_the_starter_and_the_docs_say_how_to_build_it(tmp_path, launch, monkeypatch) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    monkeypatch.chdir(tmp_path)
    assert launch("init", "--dockerfile", "docker/train.Dockerfile").code == 0
    text = (tmp_path / "docker" / "train.Dockerfile").read_text()
    assert problems(text, tmp_path) == []
    assert "`docker build -f docker/train.Dockerfile .` from the repository root" in text
    assert "docker build -f Dockerfile.cuda ." in (ROOT / "docs" / "in-your-repo.md").read_text("utf-8")
