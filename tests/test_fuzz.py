"""Fuzz `launch check` and `launch --dry-run` with mutated valid specs, random YAML and bytes.

Every case must end in exit 0, or in exit 1 with every line on stderr location first
(`FILE:LINE:COL: ...`, `FILE: ...` or `--set ARG: ...`); never a traceback, never exit 3 (a bug)
and never a hang. A spec that `check` accepts must also render (`--dry-run` exits 0).

LAUNCH_FUZZ_EXAMPLES sets the number of cases (default 1000, for CI; bench/faults.py runs
10,000 through the same generator). Runs are derandomized, so CI sees the same cases every time.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import re
import shutil
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from launcher.cli import main
from launcher.spec.validate import job_schema

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = int(os.environ.get("LAUNCH_FUZZ_EXAMPLES", "1000"))
CASE_SECONDS = 30  # a hang guard, far above the slowest honest case (deep nesting: ~1.5 s)

# A user's recipe whose config is free-form, so mutated train.config values reach the renderer.
FREE_RECIPE = 'class Free:\n    config_schema = {"type": "object"}\n'
FREE_SPEC = """\
version: 1
name: free-config
image: {code: local}
env: {PLAIN: "value"}
secrets: [wandb]
train:
  recipe: fuzz_free_recipe:Free
  config:
    lr: 0.001
    layers: [64, 64]
    schedule: {kind: cosine, warmup: 10}
    note: "a string"
"""


# --- the corpus: the repository's valid specs, with their bases next to them ------------------

@contextlib.contextmanager
def corpus(root: Path) -> Iterator[Path]:
    """Copies of jobs/ and tests/specs/good/ (bases included) plus a free-config spec under
    `root`; the free recipe's folder is on sys.path while the corpus is in use."""
    shutil.copytree(ROOT / "jobs", root / "jobs")
    shutil.copytree(ROOT / "tests" / "specs" / "good", root / "good")
    (root / "free").mkdir()
    (root / "free" / "free.yaml").write_text(FREE_SPEC)
    (root / "fuzz_free_recipe.py").write_text(FREE_RECIPE)
    sys.path.insert(0, str(root))
    try:
        yield root
    finally:
        sys.path.remove(str(root))


def _seeds() -> list[tuple[str, Any]]:
    """(folder, value) of every valid spec: the case file is written into the same folder, so
    that `extends:` finds the same bases."""
    found = [(folder, yaml.safe_load(path.read_text("utf-8")))
             for folder, where in (("jobs", ROOT / "jobs"), ("good", ROOT / "tests/specs/good"))
             for path in sorted(where.glob("*.yaml"))]
    return [*found, ("free", yaml.safe_load(FREE_SPEC))]


SEEDS = _seeds()


def _schema_keys(schema: Any) -> set[str]:
    if isinstance(schema, dict):
        own = set(schema.get("properties", {}))
        return own.union(*(_schema_keys(v) for v in schema.values()))
    if isinstance(schema, list):
        return set().union(*(_schema_keys(v) for v in schema))
    return set()


KNOWN_KEYS = sorted(_schema_keys(job_schema()) | {"extends", "lr", "num_envs", "hidden_sizes"})


# --- strategies ------------------------------------------------------------------------------

SPECIAL_CHARS = ("\x00", "\t", "\n", "\r", "\x0b", "\x0c", "\x1b", "\x7f", "\x85", "\xa0", "\u2028",
                 "\u2029", "\ufeff", "\ud800", "\udfff", "\U0001f600", "'", '"', "\\", ":", "#", "&",
                 "*", "!", "|", ">", "%", "@", "`", "{", "}", "[", "]", ",", "-", "?", "<", "=", "~", " ")
chars = st.one_of(st.characters(exclude_categories=()), st.sampled_from(SPECIAL_CHARS))
texts = st.text(chars, max_size=16)

SPECIAL_STRINGS = (
    "", "no", "yes", "on", "off", "~", "null", "true", "1e400", ".inf", "-.inf", ".nan",
    "2024-13-01", "2024-02-29", "2001-12-14t21:59:43.10-05:00", "12:30:00", "1:2:3", "0x1F",
    "0o17", "0b101", "010", "1_000", "<<", "*a", "&a", "!!python/name:os.system", "!custom",
    "{{ 7*7 }}", "{% raw %}", "__import__('os').system('x')", "'''", '"""', "# comment",
    "H100", "H100!", "A10", "16GiB", "0MiB", "90s", "25h", "0s", "launcher.recipes.ppo:PPO",
    "nosuch.module:Cls", "fuzz_free_recipe:Free", "fuzz_free_recipe:Missing", "/checkpoints",
    "/", "/root", "/tmp", "/a/../b", "HF_TOKEN", "Dockerfile.cuda", "../../etc/passwd",
    "https://example.com/r.git", "git@host:r.git", "main", "-", "---", "...", "a" * 300,
    "x\ud800", "line\u2028sep", "nul\x00byte",
)
SPECIAL_NUMBERS = (0, -1, 1, 8, 9, 33, 2**31, 2**32, 2**63, 2**64, -(2**63), 10**400, -(10**400),
                   10**999, 1.5, -0.0, 1e308, float("inf"), float("-inf"), float("nan"), 5e-324)

leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                   st.sampled_from(SPECIAL_NUMBERS), texts, st.sampled_from(SPECIAL_STRINGS),
                   st.sampled_from(KNOWN_KEYS))
keys = st.one_of(st.sampled_from(KNOWN_KEYS), st.sampled_from(KNOWN_KEYS), texts,
                 st.sampled_from(SPECIAL_STRINGS),
                 st.one_of(st.integers(-3, 3), st.none(), st.booleans(), st.floats()))
text_keys = st.one_of(st.sampled_from(KNOWN_KEYS), texts)
values = st.recursive(leaves, lambda kids: st.lists(kids, max_size=4)
                      | st.dictionaries(text_keys, kids, max_size=4), max_leaves=12)

YAML_TOKENS = (
    "version: 1\n", "name: fuzz\n", "train:\n", "  recipe: launcher.recipes.ppo:PPO\n",
    "compute:\n", "  gpu: H100\n", "env:\n", "  A: b\n", "extends: base.yaml\n", "- ", "-", ": ",
    ":", "? ", "{", "}", "[", "]", ", ", "&a ", "*a", "&b ", "*b", "<<: ", "!!str ", "!!int ",
    "!!bool ", "!!float ", "!!binary ", "!!timestamp ", "!!set ", "!!omap ",
    "!!python/object/apply:os.system ", "!!python/name:os.system ", "!custom ",
    "!<tag:yaml.org,2002:str> ", "%YAML 1.1\n", "%TAG !e! tag:example.com,2000:\n", "!e!x ",
    "---\n", "...\n", "|\n", ">-\n", "'", "''", '"', '\\"', "\\", "\\u2028", "\\0", "\\x85",
    "\\ud800", "\\U0010ffff", "#", " # c", "\n", "  ", "    ", "\t", "1e400", ".nan", "0x",
    "2024-13-01", "1:2:3", "~", "null", "yes", "9" * 1200, "x" * 2000,
)
yaml_text = st.lists(st.one_of(st.sampled_from(YAML_TOKENS), texts), max_size=40).map("".join)


def _paths(value: Any, path: tuple = ()) -> Iterator[tuple]:
    yield path
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        yield from _paths(item, path + (key,))


def _get(value: Any, path: tuple) -> Any:
    for key in path:
        value = value[key]
    return value


def _variants(value: Any) -> list[Any]:
    """The same value with another type: what a typo or a YAML surprise turns it into."""
    text = str(value)
    return [text, repr(value), [value], {"value": value}, None, True, 0, 1.5, "", len(text),
            text.upper(), text + "\n", f"{text}\u2028", f"{text}\x00"]


@st.composite
def mutated(draw: st.DrawFn, doc: Any) -> Any:
    """`doc` with one mutation at a random place: a value, a type, a key, the nesting."""
    paths = list(_paths(doc))[::-1]  # Hypothesis favours the first: train.config, not version
    # The whole document only now and then: replacing it only tests "must be a mapping".
    # (Hypothesis favours zeros, so the rare choice is the highest number.)
    whole = len(paths) == 1 or draw(st.integers(0, 19)) == 19
    path = () if whole else draw(st.sampled_from(paths[:-1]))
    node = _get(doc, path)
    parent = _get(doc, path[:-1]) if path else None
    op = draw(st.sampled_from(("unicode", "value", "type", "add", "rename", "delete", "nest", "huge")))
    if op == "value":
        new = draw(values)
    elif op == "type":
        new = draw(st.sampled_from(_variants(node)))
    elif op == "nest":
        new = node
        for _ in range(draw(st.integers(1, 100))):
            new = [new] if draw(st.booleans()) else {draw(st.sampled_from(KNOWN_KEYS)): new}
    elif op == "delete" and path:
        del parent[path[-1]]
        return doc
    elif op == "add" and isinstance(node, (dict, list)):
        if isinstance(node, dict):
            node[draw(keys)] = draw(values)
        else:
            node.insert(draw(st.integers(0, len(node))), draw(values))
        return doc
    elif op == "rename" and isinstance(parent, dict):
        parent[draw(keys)] = parent.pop(path[-1])
        return doc
    elif op == "unicode" and isinstance(node, str):
        at = draw(st.integers(0, len(node)))
        new = node[:at] + draw(texts) + node[at:]
    else:  # "huge", and the operations that do not fit this node
        new = draw(st.sampled_from((10**400, -(10**400), 10**999, float("inf"), float("nan"),
                                    "x" * 10_000, list(range(1000)), {f"k{i}": i for i in range(200)})))
    if not path:
        return new
    parent[path[-1]] = new
    return doc


@st.composite
def text_edits(draw: st.DrawFn, text: str) -> str:
    """YAML text edited below the value level: inserted tokens, duplicated or lost lines (so
    duplicate keys and broken indentation), tabs, truncation, a second document."""
    for _ in range(draw(st.integers(0, 3))):
        lines = text.splitlines(keepends=True) or [""]
        op = draw(st.sampled_from(("insert", "duplicate", "drop", "tabs", "truncate", "append", "prefix")))
        at = draw(st.integers(0, len(lines) - 1))
        if op == "insert":
            cut = draw(st.integers(0, len(text)))
            text = text[:cut] + draw(st.one_of(st.sampled_from(YAML_TOKENS), texts)) + text[cut:]
        elif op == "duplicate":
            text = "".join(lines[: at + 1] + lines[at:])
        elif op == "drop":
            text = "".join(lines[:at] + lines[at + 1:])
        elif op == "tabs":
            text = "".join(lines[:at] + [re.sub(r"^ +", "\t", lines[at])] + lines[at + 1:])
        elif op == "truncate":
            text = text[: draw(st.integers(0, len(text)))]
        elif op == "append":
            text += draw(yaml_text)
        else:
            text = draw(st.sampled_from(("\ufeff", "%YAML 1.1\n---\n", "--- !custom\n", "---\n",
                                         "# c\n", "%YAML 2.0\n---\n"))) + text
    return text


set_args = st.builds(
    lambda path, value: f"{path}={value}",
    st.one_of(st.sampled_from(("train.steps", "compute.gpu", "compute.gpu_count", "env.X", "env",
                               "train.config.lr", "checkpoint", "name", "version", "extends",
                               "retries", "train.recipe", "a.b.c", "", ".", "train..steps")),
              texts),
    st.one_of(st.sampled_from(YAML_TOKENS), st.sampled_from(SPECIAL_STRINGS), texts, yaml_text),
)


@dataclass(frozen=True)
class Case:
    folder: str  # under the corpus: where the file goes, so that `extends:` finds its bases
    data: bytes
    sets: tuple[str, ...] = ()
    dry_run: bool = False


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # a raw lone surrogate makes invalid UTF-8


@st.composite
def mutated_cases(draw: st.DrawFn) -> Case:
    folder, seed = draw(st.sampled_from(SEEDS))
    doc = copy.deepcopy(seed)
    for _ in range(draw(st.integers(1, 4))):
        doc = draw(mutated(doc))
    style = {"sort_keys": False, "allow_unicode": draw(st.booleans()),
             "default_flow_style": draw(st.sampled_from((False, True, None))),
             "width": draw(st.sampled_from((80, 1 << 20)))}
    try:
        text = yaml.dump(doc, Dumper=yaml.CSafeDumper, **style)  # libyaml: much faster
    except UnicodeEncodeError:  # libyaml cannot take a lone surrogate; PyYAML escapes it
        text = yaml.safe_dump(doc, **style)
    if draw(st.integers(0, 2)) == 2:
        text = draw(text_edits(text))
    sets = tuple(draw(st.lists(set_args, min_size=1, max_size=2))) if draw(st.integers(0, 5)) == 5 else ()
    return Case(folder, _encode(text), sets, draw(st.integers(0, 3)) == 0)


@st.composite
def free_text_cases(draw: st.DrawFn) -> Case:
    """The free-config spec with wild env values and train.config contents: these are valid,
    so they reach the renderer, the plan and --explain."""
    doc = yaml.safe_load(FREE_SPEC)
    doc["env"] = draw(st.dictionaries(st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True)
                                      .filter(lambda k: not re.search("TOKEN|SECRET|PASS|KEY", k)),
                                      st.one_of(texts, st.sampled_from(SPECIAL_STRINGS)), max_size=4))
    doc["train"]["config"] = draw(st.dictionaries(text_keys, values, max_size=6))
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=draw(st.booleans()))
    return Case("free", _encode(text), (), draw(st.booleans()))


@st.composite
def random_cases(draw: st.DrawFn) -> Case:
    """YAML-like text built from tokens, or plain bytes, sometimes after a valid spec's text."""
    folder, seed = draw(st.sampled_from(SEEDS))
    head = yaml.safe_dump(seed, sort_keys=False) if draw(st.booleans()) else ""
    if draw(st.integers(0, 4)) == 0:
        data = _encode(head) + draw(st.binary(max_size=300))
    else:  # mostly valid UTF-8 (a lone surrogate becomes "?"), so the YAML parser gets to work
        errors = "surrogatepass" if draw(st.integers(0, 3)) == 3 else "replace"
        data = (head + draw(yaml_text)).encode("utf-8", errors)
    return Case(folder, data, (), draw(st.integers(0, 3)) == 0)


def cases() -> st.SearchStrategy[Case]:
    """Every kind of case, for bench/faults.py."""
    return st.one_of(mutated_cases(), free_text_cases(), random_cases())


# --- running a case --------------------------------------------------------------------------

class CaseTimeout(BaseException):
    """Raised by the hang guard. Not an Exception, so the CLI's bug handler cannot swallow it."""


@contextlib.contextmanager
def time_bound(seconds: float) -> Iterator[None]:
    """A hang guard (not a timing assertion): SIGALRM interrupts a case that runs too long."""
    def expired(signum: int, frame: Any) -> None:
        raise CaseTimeout(f"no result after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Outcome(NamedTuple):
    args: tuple[str, ...]
    code: int | None  # None: the hang guard fired
    out: str
    err: str


def _stream(errors: str) -> io.TextIOWrapper:
    return io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors=errors, write_through=True)


def launch_in_process(*args: str, seconds: float = CASE_SECONDS) -> Outcome:
    """`launch ARGS` in-process. stdout is strict UTF-8 and stderr backslash-escapes what it
    cannot encode, like Python's own streams on a UTF-8 terminal or pipe."""
    out, err = _stream("strict"), _stream("backslashreplace")
    code: int | None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), time_bound(seconds):
            code = main(list(args))
    except CaseTimeout:
        code = None
    return Outcome(args, code, out.buffer.getvalue().decode("utf-8", "replace"),
                   err.buffer.getvalue().decode("utf-8", "replace"))


def run_case(case: Case, root: Path) -> list[Outcome]:
    path = root / case.folder / "case.yaml"
    path.write_bytes(case.data)
    sets = [f"--set={arg}" for arg in case.sets]
    outcomes = [launch_in_process("check", *sets, str(path))]
    if case.dry_run:
        outcomes.append(launch_in_process("--dry-run", *sets, str(path)))
    return outcomes


FILE_LOCATION = re.compile(r"(/[^:\n]*?)(?::\d+:\d+)?: \S")


def escapes(outcomes: list[Outcome], case: Case, root: Path) -> list[str]:
    """What went wrong in a case's outcomes, in words; [] when all is well."""
    found = []
    for o in outcomes:
        what = " ".join(o.args[:1])
        if o.code is None:
            found.append(f"{what}: hang (no exit within {CASE_SECONDS} s)")
            continue
        if "Traceback" in o.out + o.err:
            found.append(f"{what}: traceback")
        if o.code not in (0, 1):
            found.append(f"{what}: exit {o.code}: {o.err.strip()[-300:]}")
            continue
        lines = o.err.splitlines()  # splitlines: a raw U+2028 or \x85 would start a line too
        if o.args[0] == "check":
            expected_tail = "1 spec ok" if o.code == 0 else "1 spec checked, 1 with problems"
            if not lines or lines[-1] != expected_tail:
                found.append(f"check: exit {o.code} but the summary is {lines[-1:]}")
            lines = lines[:-1]
        if o.code == 1 and not lines:
            found.append(f"{what}: exit 1 with no message")
        if o.code == 1:
            found += [f"{what}: not location first: {line!r}" for line in lines
                      if not _location_first(line, case, root)]
        if o.code == 0 and o.args[0] == "--dry-run":
            try:
                compile(o.out, "app.py", "exec")
            except (SyntaxError, ValueError) as exc:
                found.append(f"{what}: the app does not compile: {exc}")
    if len(outcomes) == 2 and outcomes[0].code == 0 and outcomes[1].code != 0:
        found.append("check accepts the spec but --dry-run does not render it")
    return found


def _location_first(line: str, case: Case, root: Path) -> bool:
    for arg in case.sets:  # one with a control character is shown quoted, to keep to one line
        shown = re.escape(f"--set {arg if arg.isprintable() else repr(arg)}")
        if re.match(shown + r"(?::\d+:\d+)?: \S", line):
            return True
    match = FILE_LOCATION.match(line)
    if not match:
        return False
    try:  # the case file, or a base spec it extends
        return Path(match[1]) == root / case.folder / "case.yaml" or Path(match[1]).is_file()
    except OSError:  # a name too long to be a file
        return False


# --- the tests -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with corpus(tmp_path_factory.mktemp("fuzz")) as folder:
        yield folder


FUZZ = settings(derandomize=True, database=None, deadline=None, print_blob=False,
                suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("folder,seed", SEEDS, ids=[s[1]["name"] for s in SEEDS])
def test_every_seed_passes_check_and_renders(root: Path, folder: str, seed: Any) -> None:
    case = Case(folder, _encode(yaml.safe_dump(seed, sort_keys=False)), dry_run=True)
    outcomes = run_case(case, root)
    assert [o.code for o in outcomes] == [0, 0], outcomes
    assert escapes(outcomes, case, root) == []


# The cases split 60 : 15 : 25 between the three kinds, EXAMPLES in all.
@settings(FUZZ, max_examples=EXAMPLES * 60 // 100)
@given(case=mutated_cases())
def test_mutated_specs(root: Path, case: Case) -> None:
    assert escapes(run_case(case, root), case, root) == []


@settings(FUZZ, max_examples=EXAMPLES * 15 // 100)
@given(case=free_text_cases())
def test_free_text_values(root: Path, case: Case) -> None:
    assert escapes(run_case(case, root), case, root) == []


@settings(FUZZ, max_examples=EXAMPLES - EXAMPLES * 60 // 100 - EXAMPLES * 15 // 100)
@given(case=random_cases())
def test_random_yaml_and_bytes(root: Path, case: Case) -> None:
    assert escapes(run_case(case, root), case, root) == []


# What the fuzz found, kept as exact cases: each was an internal error (exit 3) or a message
# that spread over several lines.
MINIMAL = 'version: 1\nname: x\ntrain: {recipe: "launcher.recipes.ppo:PPO"}\n'
FOUND = {
    "set flag with a newline": (MINIMAL, ("train.steps=version: 1\n",),
                                "--set 'train.steps=version: 1\\n': $.train.steps: {'version': 1} is not of "
                                "type 'integer'"),
    "key with a newline": (MINIMAL.replace("}\n", ', config: {"a\\nb": {0: 1}}}\n'), (),
                           "{path}:3:63: $.train.config['a\\nb']: keys must be plain strings, not int"),
    "NUL in extends": ('version: 1\nextends: ["\\0base.yaml"]\n' + MINIMAL[11:], (),
                       "{path}:2:10: $.extends: must be a path or a list of paths to base specs"),
    "extends name too long": ("version: 1\nextends: " + "x" * 300 + "\n" + MINIMAL[11:], (),
                              "{path}:2:10: $.extends: base spec '{folder}/" + "x" * 300 + "' does not exist"),
    "int of 5000 digits": (MINIMAL + "extra: " + "9" * 5000 + "\n", (),
                           "{path}:4:8: $.extra: integer longer than 1000 characters; refusing to load it"),
}


@pytest.mark.parametrize("text,sets,message", FOUND.values(), ids=FOUND.keys())
def test_what_the_fuzz_found(root: Path, text: str, sets: tuple[str, ...], message: str) -> None:
    case = Case("good", _encode(text), sets, dry_run=True)
    outcomes = run_case(case, root)
    expected = message.replace("{path}", str(root / "good" / "case.yaml")).replace("{folder}", str(root / "good"))
    assert [(o.code, o.err) for o in outcomes] == [
        (1, f"{expected}\n1 spec checked, 1 with problems\n"), (1, f"{expected}\n")]
    assert escapes(outcomes, case, root) == []


# The harness itself: each kind of escape is caught, so a green fuzz run means something.

def test_the_harness_flags_a_traceback_an_internal_error_and_unlocated_lines(root: Path) -> None:
    case = Case("good", b"")
    path = str(root / "good" / "case.yaml")
    assert escapes([Outcome(("check", path), 3, "", "launch: internal error\n")], case, root) \
        == ["check: exit 3: launch: internal error"]
    assert escapes([Outcome(("check", path), 1, "", "Traceback (most recent call last):\n"
                            "1 spec checked, 1 with problems\n")], case, root) \
        == ["check: traceback", "check: not location first: 'Traceback (most recent call last):'"]
    assert escapes([Outcome(("check", path), 1, "", f"{path}:1:1: $: bad\nline two\n"
                            "1 spec checked, 1 with problems\n")], case, root) \
        == ["check: not location first: 'line two'"]
    assert escapes([Outcome(("check", path), 1, "", "<unknown>: $.x: bad\n"
                            "1 spec checked, 1 with problems\n")], case, root) \
        == ["check: not location first: '<unknown>: $.x: bad'"]
    assert escapes([Outcome(("check", path), 0, "", "1 spec ok\n"),
                    Outcome(("--dry-run", path), 3, "", "boom\n")], case, root) \
        == ["--dry-run: exit 3: boom", "check accepts the spec but --dry-run does not render it"]
    assert escapes([Outcome(("check", path), None, "", "")], case, root) \
        == [f"check: hang (no exit within {CASE_SECONDS} s)"]
    assert escapes([Outcome(("check", path), 1, "", f"{path}:1:1: $: a\u2028b\n"
                            "1 spec checked, 1 with problems\n")], case, root) \
        == ["check: not location first: 'b'"]  # a raw line separator splits the message
    assert escapes([Outcome(("--dry-run", path), 0, "x = (\n", "")], case, root) \
        == ["--dry-run: the app does not compile: '(' was never closed (app.py, line 1)"]
    assert escapes([Outcome(("--dry-run", path), 1, "", "")], case, root) == ["--dry-run: exit 1 with no message"]


def test_the_hang_guard_stops_a_case_that_runs_too_long() -> None:
    with pytest.raises(CaseTimeout), time_bound(0.05):
        while True:
            pass
