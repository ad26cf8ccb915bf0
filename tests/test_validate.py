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
from launcher.spec.credentials import looks_like_credential
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
                              every_s=600, keep_last=3, resume="auto", async_write="auto"),
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


CREDENTIAL_NAMES = [
    "HF_TOKEN", "GITHUB_TOKEN", "TOKEN", "AWS_SECRET_ACCESS_KEY", "SECRET", "CLIENT_SECRET_ID",
    "DB_PASSWORD", "PASSWD", "WANDB_API_KEY", "KEY", "hf_token",
    # missed before: each holds a credential, or a URL or file that carries one
    "AWS_ACCESS_KEY_ID", "GITHUB_PAT", "GH_PAT", "DB_PASS", "SMTP_PASS", "PASSPHRASE", "SSH_PASSPHRASE",
    "APIKEY", "OPENAI_APIKEY", "apiKey", "hfToken", "NGROK_AUTHTOKEN", "GOOGLE_APPLICATION_CREDENTIALS",
    "AWS_CREDENTIALS", "CREDENTIALS", "DOCKER_CREDS", "DATABASE_URL", "DB_URI", "REDIS_URL",
    "MONGODB_URI", "POSTGRES_DSN", "SLACK_WEBHOOK_URL", "DISCORD_WEBHOOK", "WEBHOOK_URL", "SENTRY_DSN",
    "DSN", "PRIVATE_KEY", "SSH_PRIVATE_KEY_PATH", "SIGNING_KEY", "AUTH", "BASIC_AUTH", "HTTP_AUTHORIZATION",
    "COOKIE", "SESSION_COOKIE", "SESSION", "SESSION_ID", "AZURE_STORAGE_CONNECTION_STRING", "DB_PWD",
    "HF-TOKEN", "hf.token",
]
PLAIN_NAMES = [
    "TOKENIZERS_PARALLELISM", "MAX_TOKENS", "KEYBOARD", "MONKEY", "KEY_COUNT", "SECRETARY", "WANDB_PROJECT",
    "KEY_FIELD", "KEYS_DIR", "SORT_KEYS", "PATH", "PWD", "PASSES", "NUM_PASSES", "BYPASS_CACHE", "COMPASS",
    "PATIENCE", "AUTHOR", "OAUTHLIB_INSECURE_TRANSPORT", "SESSION_NAME", "WANDB_BASE_URL", "HF_ENDPOINT",
    "HF_HOME", "MLFLOW_TRACKING_URI", "TORCH_HOME", "PIN_MEMORY", "CUDA_VISIBLE_DEVICES", "SECRETS_DIR",
    "TOKENIZER", "MAX_NEW_TOKENS", "DATASET_URL", "PAD_TOKEN", "eos_token_id", "bos_token", "MAX_TOKEN",
]


@pytest.mark.parametrize("name", CREDENTIAL_NAMES)
def test_credential_names_are_refused_in_env(name: str) -> None:
    found = problems(MINIMAL + f"env: {{'{name}': x}}\n")
    assert f"t.yaml:4:7: $.env.{name}: {name!r} looks like a credential: put it in a Modal Secret " \
           "and list the secret's name under secrets:" in found


@pytest.mark.parametrize("name", [n for n in PLAIN_NAMES if n.isidentifier()])
def test_plain_settings_are_not_mistaken_for_credentials(name: str) -> None:
    assert spec_of(MINIMAL + f"env: {{{name}: x}}\n").env == {name: "x"}


@pytest.mark.parametrize("name", CREDENTIAL_NAMES)
def test_what_looks_like_a_credential(name: str) -> None:
    assert looks_like_credential(name)


@pytest.mark.parametrize("name", PLAIN_NAMES)
def test_what_does_not(name: str) -> None:
    assert not looks_like_credential(name)


FREE = "version: 1\nname: j\ntrain:\n  recipe: validate_free_recipe:Free\n  config:\n"


@pytest.fixture
def free_recipe(tmp_path, monkeypatch) -> None:
    (tmp_path / "validate_free_recipe.py").write_text('class Free:\n    config_schema = {"type": "object"}\n')
    monkeypatch.syspath_prepend(str(tmp_path))


@pytest.mark.parametrize("name", ["api_key", "password", "hf_token", "db_pass", "aws_secret_access_key",
                                  "wandb_api_key", "private_key", "apiKey"])
def test_a_recipe_setting_named_like_a_credential_is_refused(free_recipe, name: str) -> None:
    assert problems(FREE + f"    nested: [{{{name}: x}}]\n") == [
        f"t.yaml:6:15: $.train.config.nested[0].{name}: {name!r} looks like a credential: put it in a "
        "Modal Secret and list the secret's name under secrets:"]


@pytest.mark.parametrize("name", ["text_key", "cache_key", "sort_key", "pad_token", "eos_token_id",
                                  "max_new_tokens", "tokenizer_name", "learning_rate"])
def test_a_recipe_setting_merely_ending_in_key_is_not(free_recipe, name: str) -> None:
    assert spec_of(FREE + f"    {name}: x\n").train.config == {name: "x"}


@pytest.mark.parametrize("name", ["LAUNCH_CHECKPOINT_DIR", "LAUNCH_FAULT", "LAUNCH_PROCESSES", "launch_run_dir"])
def test_the_runtimes_own_variables_are_refused_in_env(name: str) -> None:
    assert problems(MINIMAL + f"env: {{{name}: x}}\n") == [
        f"t.yaml:4:7: $.env.{name}: {name!r} is reserved: LAUNCH_* variables configure launcher's "
        "runtime; use another name"]


def test_rdma_on_one_node_is_a_warning_in_check(launch, tmp_path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(MINIMAL + "compute:\n  gpu: H100\n  rdma: true\n", "utf-8")
    assert launch("check", str(path)) == (0, "", (
        f"warning: {path}:6:9: $.compute.rdma: true has no effect with compute.nodes 1: Modal drops "
        "RDMA outside a cluster (nodes > 1)\n1 spec ok\n"))
    result = launch("--dry-run", str(path))
    assert result.code == 0
    assert "warning: $.compute.rdma: true has no effect with compute.nodes 1: Modal drops RDMA " \
           "outside a cluster (nodes > 1)\n" in result.err
    assert launch("check", "--set", "compute.nodes=2", "--set", "compute.gpu_count=8", str(path)) == \
        (0, "", "1 spec ok\n")


def test_infinite_numbers_are_refused() -> None:
    assert problems(MINIMAL + "retries: {backoff_coefficient: .inf}\n") == [
        "t.yaml:4:32: $.retries.backoff_coefficient: inf is greater than the maximum of 10",
        "t.yaml:4:32: $.retries.backoff_coefficient: inf is not a finite number",
    ]
