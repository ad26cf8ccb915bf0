"""How the training code gets into the image: one pinned commit (`image.code: git`) or this
working tree (`local`), resolved from the spec and the repository it lives in."""

from __future__ import annotations

from dataclasses import dataclass

from launcher import gitinfo
from launcher.spec.model import JobSpec


@dataclass(frozen=True)
class CodeSource:
    mode: str  # git | local
    git_url: str | None = None  # provenance only, user info stripped; the image never fetches it
    git_commit: str | None = None

    def describe(self) -> str:
        """The plan's `code` line: what will be done, before anything is exported."""
        if self.mode == "local":
            return ("local: this working tree as git sees it (tracked, and untracked but not "
                    "ignored) into /opt/project, the working directory")
        url = _shown(self.git_url) if self.git_url else "(no origin remote)"
        return (f"git {url} @ {_shown(self.git_commit or '')}: exported with git archive into "
                ".launch/code/ when launched, into /opt/project, the working directory")


def _shown(text: str) -> str:
    """One line of plain text whatever git config holds (a quoted value may hold a newline)."""
    return repr(text)[1:-1]


@dataclass(frozen=True)
class ResolvedCode:
    source: CodeSource
    note: str | None = None  # why git could not be pinned (a dry run renders local code instead)


def resolve(spec: JobSpec, repo: gitinfo.Repo, use_local_code: bool) -> ResolvedCode:
    if use_local_code or spec.image.code == "local":
        return ResolvedCode(CodeSource("local"))
    ref = spec.image.git.ref
    commit = gitinfo.lookup(repo, ref or "HEAD")
    if commit is None:
        return ResolvedCode(CodeSource("local"), f"image.code is git, but {_why_unpinned(repo, ref)}, "
                                                 "or pass --use-local-code")
    url = spec.image.git.url or gitinfo.origin_url(repo)
    return ResolvedCode(CodeSource("git", url and gitinfo.safe_url(url), commit.sha))


def _why_unpinned(repo: gitinfo.Repo, ref: str | None) -> str:
    if not repo.in_git:  # the spec's folder, which may lie outside the folder launch runs in
        return (f"{repo.asked or repo.root} is not in a git repository (the code is exported "
                "from the repository that holds the spec); set image.code: local")
    if ref is None:
        return "this repository has no commit yet; commit"
    return (f"image.git.ref {ref!r} names no commit in this repository, which the code is "
            "exported from; fetch it")
