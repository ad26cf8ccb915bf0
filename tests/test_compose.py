"""launcher.spec.compose: extends (deep merge, positions follow values) and --set overrides."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from launcher.errors import Location, SpecError
from launcher.spec import yamlpos
from launcher.spec.compose import apply_set, compose, merge

GOOD = Path(__file__).resolve().parent / "specs" / "good"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, "utf-8")
    return path


def problems(call, *args) -> list[str]:
    with pytest.raises(SpecError) as caught:
        call(*args)
    return [str(p) for p in caught.value.problems]


def test_merge_is_deep_for_mappings_and_replaces_everything_else() -> None:
    base = yamlpos.parse("a: {x: 1, y: [1, 2]}\nb: {k: v}\nc: 1\n", "base.yaml")
    over = yamlpos.parse("a: {y: [3]}\nb: 2\nd: {e: 1}\n", "over.yaml")
    merged = merge(base, over)
    assert merged.value == {"a": {"x": 1, "y": [3]}, "b": 2, "c": 1, "d": {"e": 1}}
    assert merged.where(("a", "x")) == Location("base.yaml", 1, 8)
    assert merged.where(("a", "y")) == Location("over.yaml", 1, 8)
    assert merged.where(("a", "y", 0)) == Location("over.yaml", 1, 9)
    assert merged.where(("a", "y", 1)) == Location("over.yaml", 1, 8)  # gone: nearest parent
    assert merged.where(("b",)) == Location("over.yaml", 2, 4)
    assert merged.where(("b", "k")) == Location("over.yaml", 2, 4)  # replaced by a scalar
    assert merged.where(("c",), key=True) == Location("base.yaml", 3, 1)


def test_merge_leaves_its_inputs_alone() -> None:
    base = yamlpos.parse("a: {x: 1}\n", "base.yaml")
    over = yamlpos.parse("a: {y: 2}\n", "over.yaml")
    merge(base, over)
    assert (base.value, over.value) == ({"a": {"x": 1}}, {"a": {"y": 2}})


def test_bases_merge_in_order_then_the_file_on_top() -> None:
    doc = compose(GOOD / "extends_list.yaml", display="good/extends_list.yaml")
    assert "extends" not in doc.value
    assert doc.value["compute"] == {"gpu": ["H100", "A100-80GB"], "cpu": 2, "gpu_count": 2}
    assert doc.value["train"] == {"recipe": "launcher.recipes.ppo:PPO", "steps": 10}
    assert doc.where(("compute", "cpu")) == Location("good/bases/common.yaml", 3, 8)
    assert doc.where(("compute", "gpu", 1)) == Location("good/bases/gpu.yaml", 2, 15)
    assert doc.where(("train", "steps")) == Location("good/extends_list.yaml", 6, 10)


def test_extends_is_relative_to_the_file_not_the_working_directory(tmp_path, monkeypatch) -> None:
    write(tmp_path, "specs/base.yaml", "name: from-base\n")
    child = write(tmp_path, "specs/child.yaml", "version: 1\nextends: base.yaml\n")
    monkeypatch.chdir(tmp_path)
    assert compose(child).value == {"version": 1, "name": "from-base"}


def test_a_chain_of_bases_names_each_file_relative_to_the_first(tmp_path) -> None:
    write(tmp_path, "jobs/a.yaml", "extends: shared/b.yaml\n")
    write(tmp_path, "jobs/shared/b.yaml", "extends: ../../common/c.yaml\n")
    write(tmp_path, "common/c.yaml", "compute: {gpu_count: 2}\n")
    doc = compose(tmp_path / "jobs/a.yaml", display="jobs/a.yaml")
    assert doc.value == {"compute": {"gpu_count": 2}}
    assert doc.where(("compute", "gpu_count")) == Location("common/c.yaml", 1, 22)


def test_an_empty_extends_list_means_no_bases(tmp_path) -> None:
    path = write(tmp_path, "a.yaml", "extends: []\nname: x\n")
    assert compose(path).value == {"name": "x"}


def test_a_file_that_extends_itself_is_a_cycle(tmp_path) -> None:
    path = write(tmp_path, "a.yaml", "name: x\nextends: [./a.yaml]\n")
    assert problems(compose, path, (), "a.yaml") == [
        "a.yaml:2:11: $.extends: extends cycle: a.yaml -> a.yaml"]


@pytest.mark.parametrize("links", [{"loop.yaml": "loop.yaml"}, {"a.yaml": "b.yaml", "b.yaml": "a.yaml"}],
                         ids=["self", "cycle"])
def test_a_base_that_is_a_loop_of_symbolic_links(tmp_path, launch, links: dict[str, str]) -> None:
    for name, target in links.items():
        (tmp_path / name).symlink_to(target)
    first = next(iter(links))
    job = write(tmp_path, "job.yaml", f"version: 1\nextends: {first}\nname: j\n")
    message = f"job.yaml:2:10: $.extends: base spec '{first}' is a loop of symbolic links"
    assert problems(compose, job, (), "job.yaml") == [message]
    assert launch("check", str(job)) == (
        1, "", f"{job}:2:10: $.extends: base spec '{tmp_path / first}' is a loop of symbolic links\n"
               "1 spec checked, 1 with problems\n")


def test_a_diamond_is_not_a_cycle(tmp_path) -> None:
    write(tmp_path, "common.yaml", "compute: {cpu: 1}\n")
    write(tmp_path, "left.yaml", "extends: common.yaml\ncompute: {gpu: T4}\n")
    write(tmp_path, "right.yaml", "extends: common.yaml\ncompute: {gpu: L4}\n")
    top = write(tmp_path, "top.yaml", "extends: [left.yaml, right.yaml]\n")
    assert compose(top).value == {"compute": {"cpu": 1, "gpu": "L4"}}


def test_a_base_that_is_not_a_mapping(tmp_path) -> None:
    write(tmp_path, "base.yaml", "- a\n")
    path = write(tmp_path, "a.yaml", "extends: base.yaml\n")
    assert problems(compose, path, (), "a.yaml") == [
        "a.yaml:1:10: $.extends: base spec 'base.yaml' is not a job spec: its top level is not a "
        "mapping of spec keys (its content is not shown)"]


def test_a_base_that_is_not_a_spec_is_refused_without_echoing_it(tmp_path, launch) -> None:
    # /etc/shadow parses as a mapping whose keys are its lines: they must never be printed.
    write(tmp_path, "shadow", "root:*:20228:0:99999:7:::\ndaemon:*:20228:0:99999:7:::\n")
    job = write(tmp_path, "job.yaml", "version: 1\nname: j\nextends: shadow\n")
    result = launch("check", str(job))
    assert (result.code, result.out) == (1, "")
    assert result.err.splitlines()[0] == (
        f"{job}:3:10: $.extends: base spec '{tmp_path / 'shadow'}' is not a job spec: its top "
        "level is not a mapping of spec keys (its content is not shown)")
    assert "root:" not in result.err and "20228" not in result.err


def spec_doc():
    return yamlpos.parse("version: 1\ncompute: {gpu: H100, gpu_count: 1}\nenv: {A: '1'}\n", "s.yaml")


@pytest.mark.parametrize("arg, path, value", [
    ("compute.gpu_count=4", ("compute", "gpu_count"), 4),
    ("compute.gpu=[H100, L4]", ("compute", "gpu"), ["H100", "L4"]),
    ("compute.rdma=true", ("compute", "rdma"), True),
    ("env.B='007'", ("env", "B"), "007"),
    ("env.URL=a=b", ("env", "URL"), "a=b"),  # only the first '=' splits
    ("compute.region=", ("compute", "region"), None),
    ("train.steps=500", ("train", "steps"), 500),  # creates the train mapping
    (" compute.cpu =2.5", ("compute", "cpu"), 2.5),
])
def test_set_reads_the_value_as_yaml(arg: str, path: tuple, value) -> None:
    doc = apply_set(spec_doc(), arg)
    node = doc.value
    for key in path:
        node = node[key]
    assert node == value
    assert doc.where(path) == Location(f"--set {arg}")
    assert doc.where(path, key=True) == Location(f"--set {arg}")


def test_set_replaces_a_subtree_and_its_positions() -> None:
    doc = apply_set(spec_doc(), "compute={gpu: L4}")
    assert doc.value["compute"] == {"gpu": "L4"}
    assert doc.where(("compute", "gpu_count")) == Location("--set compute={gpu: L4}")
    assert doc.where(("env", "A")) == Location("s.yaml", 3, 10)


def test_set_values_are_not_shared_between_documents() -> None:
    first = apply_set(spec_doc(), "env={B: x}")
    first.value["env"]["B"] = "changed"
    assert apply_set(spec_doc(), "env={B: x}").value["env"] == {"B": "x"}


@pytest.mark.parametrize("arg, expected", [
    ("compute.gpu_count", "--set compute.gpu_count: expected PATH=VALUE, e.g. --set train.steps=500"),
    ("=3", "--set =3: '' is not a dotted path such as compute.gpu_count"),
    ("compute..gpu=H100", "--set compute..gpu=H100: 'compute..gpu' is not a dotted path such as compute.gpu_count"),
    ("compute.gpu.=H100", "--set compute.gpu.=H100: 'compute.gpu.' is not a dotted path such as compute.gpu_count"),
    ("version.x=1", "--set version.x=1: $.version: is not a mapping, so it has no keys to set"),
    ("compute.gpu.type=H100", "--set compute.gpu.type=H100: $.compute.gpu: is not a mapping, so it has no keys to set"),
    ("compute.gpu=[H100", "--set compute.gpu=[H100:1:6: expected ',' or ']', but got '<stream end>'"),
    ("name=!!python/name:os.system", "--set name=!!python/name:os.system:1:1: could not determine a constructor "
     "for the tag 'tag:yaml.org,2002:python/name:os.system'"),
    ("extends=base.yaml", "--set extends=base.yaml: $.extends: cannot be set with --set; "
     "edit the spec's extends: instead"),
])
def test_bad_set_arguments(arg: str, expected: str) -> None:
    assert problems(apply_set, spec_doc(), arg) == [expected]


def test_spaces_around_the_keys_of_a_set_path_are_not_part_of_them() -> None:
    doc = apply_set(spec_doc(), " compute . gpu_count =8")
    assert doc.value["compute"]["gpu_count"] == 8


def test_sets_apply_in_order_after_the_bases(tmp_path) -> None:
    write(tmp_path, "base.yaml", "compute: {gpu_count: 2}\n")
    path = write(tmp_path, "a.yaml", "extends: base.yaml\ncompute: {gpu_count: 4}\n")
    doc = compose(path, ("compute.gpu_count=6", "compute.gpu_count=8"))
    assert doc.value == {"compute": {"gpu_count": 8}}
    assert doc.where(("compute", "gpu_count")) == Location("--set compute.gpu_count=8")


def test_display_defaults_to_the_path(tmp_path) -> None:
    path = write(tmp_path, "a.yaml", "name: [\n")
    assert problems(compose, path) == [f"{os.fspath(path)}:2:1: expected the node content, but found '<stream end>'"]
