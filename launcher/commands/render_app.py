"""`launch --dry-run`: print the generated app (stdout or --out) and the plan (stderr)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click

from launcher import dockerfile, gitinfo, repofiles, shipreport
from launcher.codesource import CodeSource, resolve
from launcher.cost import prices
from launcher.errors import printable
from launcher.explain import explain as explain_text
from launcher.load import Loaded, load_spec
from launcher.plan import plan
from launcher.render import render


@dataclass(frozen=True)
class Rendered:
    loaded: Loaded
    repo: gitinfo.Repo
    code: CodeSource
    app: str
    note: str | None

    @property
    def code_line(self) -> str:
        return self.code.describe()

    def ship_lines(self) -> list[str]:
        """The plan's lines on the shipped code, and a warning when `code: git` at HEAD would
        miss uncommitted changes that matter to the job."""
        lines = shipreport.ship_lines(shipreport.shipped(self.code, self.repo.root))
        if self.code.mode == "git" and self.code.git_commit and self.loaded.spec.image.git.ref is None:
            missed = shipreport.unshipped_changes(self.loaded.spec, spec_files(self.loaded), self.repo.root)
            if missed:
                shown = ", ".join(missed[:5]) + (f" and {len(missed) - 5} more" if len(missed) > 5 else "")
                lines.append(f"warning: image.code is git, which ships commit {self.code.git_commit[:12]}, "
                             f"without these uncommitted changes: {shown}; commit them, or pass "
                             "--use-local-code (`launch` refuses to run until then)")
        return lines


def spec_files(loaded: Loaded) -> list[Path]:
    """The spec and the files it extends: every file a value came from."""
    return sorted({Path(where.source) for where in loaded.doc.values.values() if where.line is not None})


def render_loaded(loaded: Loaded, use_local_code: bool) -> Rendered:
    """The app for a loaded spec, with the code it pins; refuses a missing Dockerfile."""
    repo = gitinfo.find_repo(loaded.path.resolve())
    dockerfile.require(loaded, repo.root)
    repofiles.require_inputs(loaded.doc, loaded.spec, repo.root)
    code = resolve(loaded.spec, repo, use_local_code)
    app = render(loaded.spec, loaded.source, code.source)
    return Rendered(loaded, repo, code.source, app, code.note)


def write_if_changed(path: Path, text: str) -> bool:
    """Write `text` unless the file already holds it; True when the file changed."""
    if path.is_file() and path.read_text("utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, "utf-8")
    return True


def dry_run(job: str, sets: tuple[str, ...], out: str | None, use_local_code: bool,
            explain: bool = False) -> int:
    rendered = render_loaded(load_spec(job, sets), use_local_code)
    if rendered.note:
        click.echo(printable(f"note: {rendered.note} (this dry run shows the app with local code)"), err=True)
    click.echo(plan(rendered.loaded.spec, rendered.loaded.source, rendered.code_line,
                    rendered.ship_lines(), rendered.loaded.sweep), err=True, nl=False)
    if explain:
        click.echo(explain_text(rendered.loaded.doc, rendered.loaded.spec, prices()), err=True, nl=False)
    if out is None:
        click.echo(rendered.app, nl=False)
    elif write_if_changed(Path(out), rendered.app):
        click.echo(printable(f"wrote {out}"), err=True)
    else:
        click.echo(printable(f"{out} is up to date"), err=True)
    return 0
