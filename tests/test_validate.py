"""launcher.spec.validate: schema plus semantic checks, defaults, and the JobSpec they give.

The spec corpora run end to end through `launch check`: tests/specs/bad/<case>.yaml must fail
with exactly the lines in <case>.expected; tests/specs/good/*.yaml must pass.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from launcher.errors import SpecError
from launcher.spec import yamlpos
from launcher.spec.model import (Checkpoint, Compute, GitSource, Image, JobSpec, KeepWarm,
                                 Retries, Train)
from launcher.spec.validate import job_schema, validate

SPECS = Path(__file__).resolve().parent / "specs"
BAD, GOOD = SPECS / "bad", SPECS / "good"
BAD_CASES = sorted(p.stem for p in BAD.glob("*.yaml"))
GOOD_CASES = sorted(p.name for p in GOOD.glob("*.yaml"))
SUMMARY = "1 spec checked, 1 with problems\n"
MINIMAL = "version: 1\nname: job\ntrain: {recipe: launcher.recipes.ppo:PPO}\n"


def spec_of(text: str) -> JobSpec:
    return validate(yamlpos.parse(text, "t.yaml"))


def problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        spec_of(text)
    return [str(p) for p in caught.value.problems]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_spec_fails_check_with_exact_errors(case: str, launch, monkeypatch) -> None:
    monkeypatch.chdir(BAD)
    expected = (BAD / f"{case}.expected").read_text("utf-8")
    assert launch("check", f"{case}.yaml") == (1, "", expected + SUMMARY)


def test_the_bad_corpus_covers_every_section() -> None:
    assert len(BAD_CASES) >= 30
    assert sorted(p.stem for p in BAD.glob("*.expected")) == BAD_CASES
    sections = [*job_schema()["properties"], "yaml", "many"]  # cases are named <section>_<what>
    assert [s for s in sections if not any(c.startswith(f"{s}_") for c in BAD_CASES)] == []


@pytest.mark.parametrize("case", GOOD_CASES)
def test_good_spec_passes_check(case: str, launch, monkeypatch) -> None:
    monkeypatch.chdir(GOOD)
    assert launch("check", case) == (0, "", "1 spec ok\n")


def test_check_reports_every_file_then_a_summary(launch, monkeypatch) -> None:
    monkeypatch.chdir(SPECS)
    result = launch("check", "good/minimal.yaml", "bad/snapshot_enum.yaml", "good/cpu_only.yaml",
                    "bad/name_missing.yaml")
    assert result == (1, "", "bad/snapshot_enum.yaml:5:11: $.snapshot: 'memory' is not one of "
                             "['none', 'cpu', 'gpu']\n"
                             "bad/name_missing.yaml:1:1: $: missing required key 'name'\n"
                             "4 specs checked, 2 with problems\n")


def test_a_minimal_spec_gets_every_default() -> None:
    assert spec_of(MINIMAL) == JobSpec(
        version=1, name="job",
        compute=Compute(gpu=(), gpu_count=1, nodes=1, rdma=False, cpu=4.0, memory_mib=16384,
                        timeout_s=14400, region=(), cloud=None),
        image=Image("Dockerfile.cuda", "git", GitSource(None, None)),
        snapshot="cpu",
        retries=Retries(max_retries=3, initial_delay_s=10, backoff_coefficient=2.0, max_delay_s=60),
        keep_warm=KeepWarm(min_containers=0, max_containers=None, buffer_containers=0,
                           scaledown_window_s=300),
        checkpoint=Checkpoint(volume="launcher-checkpoints", mount="/checkpoints", every_steps=100,
                              every_s=600, keep_last=3, resume="auto"),
        secrets=(), env={},
        train=Train(recipe="launcher.recipes.ppo:PPO", steps=1000, seed=0, mixed_precision="no",
                    gradient_accumulation_steps=1, log_every=10, tracker="tensorboard", config={}),
    )


def test_shorthand_is_normalised() -> None:
    spec = spec_of(MINIMAL + "compute: {gpu: L4, memory: 2GiB, timeout: 90m, region: us-east}\n"
                             "retries: 5\nkeep_warm: {scaledown_window: 30}\n"
                             "checkpoint: {every: null, every_steps: 7}\n")
    assert (spec.compute.gpu, spec.compute.memory_mib, spec.compute.timeout_s, spec.compute.region) \
        == (("L4",), 2048, 5400, ("us-east",))
    assert spec.retries == Retries(max_retries=5, initial_delay_s=10, backoff_coefficient=2.0,
                                   max_delay_s=60)
    assert (spec.keep_warm.scaledown_window_s, spec.checkpoint.every_s) == (30, None)


def test_integers_are_seconds_and_mebibytes() -> None:
    spec = spec_of(MINIMAL + "compute: {memory: 1536, timeout: 45, cpu: 2}\n")
    assert (spec.compute.memory_mib, spec.compute.timeout_s, spec.compute.cpu) == (1536, 45, 2.0)


@pytest.mark.parametrize("compute, expected", [
    ("{gpu: null}", None),
    ("{gpu: H100}", "H100"),
    ("{gpu: H100, gpu_count: 8}", "H100:8"),
    ("{gpu: [H100, A100-80GB], gpu_count: 2}", ["H100:2", "A100-80GB:2"]),
    ("{gpu: [L4]}", "L4"),
])
def test_gpu_string_is_what_modal_takes(compute: str, expected) -> None:
    assert spec_of(MINIMAL + f"compute: {compute}\n").gpu_string == expected


def test_the_spec_round_trips_through_plain_data() -> None:
    spec = spec_of(MINIMAL + "compute: {gpu: [H100, L4], region: [us-east]}\nsecrets: [a]\n"
                             "env: {X: y}\nkeep_warm: {max_containers: 3}\n")
    data = spec.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert JobSpec.from_dict(data) == spec


def test_validation_neither_changes_the_document_nor_shares_defaults() -> None:
    doc = yamlpos.parse(MINIMAL, "t.yaml")
    before = json.dumps(doc.value, sort_keys=True)
    first = validate(doc)
    assert json.dumps(doc.value, sort_keys=True) == before
    first.train.config["mutated"] = True
    first.env["MUTATED"] = "1"
    second = validate(doc)
    assert (second.train.config, second.env) == ({}, {})
    assert job_schema()["properties"]["env"]["default"] == {}


def test_the_format_version_is_checked_before_anything_else() -> None:
    assert problems("version: 3\nname: 'bad name'\ncompute: {gpu: NOPE}\n") == [
        "t.yaml:1:10: $.version: format version 3 needs a newer launcher "
        "(launcher 0.1.0 reads format version 1)"]


def test_problems_are_sorted_by_position_and_unique() -> None:
    found = problems(MINIMAL + "snapshot: memory\ncompute: {gpu_count: 9, cpu: -1}\n")
    assert found == [
        "t.yaml:4:11: $.snapshot: 'memory' is not one of ['none', 'cpu', 'gpu']",
        "t.yaml:5:22: $.compute.gpu_count: 9 is greater than the maximum of 8",
        "t.yaml:5:30: $.compute.cpu: -1 is less than or equal to the minimum of 0",
    ]


@pytest.mark.parametrize("name", [
    "HF_TOKEN", "GITHUB_TOKEN", "TOKEN", "AWS_SECRET_ACCESS_KEY", "SECRET", "CLIENT_SECRET_ID",
    "DB_PASSWORD", "PASSWD", "WANDB_API_KEY", "KEY", "hf_token",
])
def test_credential_names_are_refused_in_env(name: str) -> None:
    assert problems(MINIMAL + f"env: {{{name}: x}}\n") == [
        f"t.yaml:4:7: $.env.{name}: {name!r} looks like a credential: put it in a Modal Secret "
        "and list the secret's name under secrets:"]


@pytest.mark.parametrize("name", [
    "TOKENIZERS_PARALLELISM", "MAX_TOKENS", "KEYBOARD", "MONKEY", "KEY_COUNT", "SECRETARY", "WANDB_PROJECT",
])
def test_plain_settings_are_not_mistaken_for_credentials(name: str) -> None:
    assert spec_of(MINIMAL + f"env: {{{name}: x}}\n").env == {name: "x"}


def test_infinite_numbers_are_refused() -> None:
    assert problems(MINIMAL + "retries: {backoff_coefficient: .inf}\n") == [
        "t.yaml:4:32: $.retries.backoff_coefficient: inf is greater than the maximum of 10",
        "t.yaml:4:32: $.retries.backoff_coefficient: inf is not a finite number",
    ]
