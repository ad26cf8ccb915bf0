"""A spec's stages: what they inherit, what a job without them keeps, the plan's lines, the
driver's derived timeout, and the stage runtime's own checks (metrics, results, digests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from launcher.errors import RunError
from launcher.plan import plan
from launcher.runtime.failures import PermanentError
from launcher.runtime.pipeline import stages
from launcher.spec import yamlpos
from launcher.spec.model import JobSpec
from launcher.spec.pipeline import DRIVER_MARGIN_S, check_rerun, driver_timeout_s, longest_s
from launcher.spec.validate import check, validate

JOB = ("version: 1\nname: j\ncompute: {gpu: [H100, A100-80GB], gpu_count: 2, cpu: 8, memory: 32GiB,"
       " timeout: 2h}\nsnapshot: cpu\nretries: {max_retries: 1, initial_delay: 0s}\n"
       "train: {recipe: launcher.recipes.digits:Digits}\n")


def spec_of(text: str) -> JobSpec:
    return validate(yamlpos.parse(text, "t.yaml"))


def test_a_stage_inherits_the_jobs_compute_field_by_field() -> None:
    spec = spec_of(JOB + "stages:\n  evaluate: {run: launcher.recipes.digits:evaluate, "
                         "compute: {memory: 8GiB}}\n")
    (evaluate,) = spec.stages
    c = evaluate.compute
    assert (c.gpu, c.gpu_count, c.cpu, c.memory_mib, c.timeout_s) == (("H100", "A100-80GB"), 1, 8.0, 8192, 7200)
    assert (evaluate.retries.max_retries, evaluate.snapshot) == (1, "cpu")
    assert spec.pipeline == ("train", "evaluate")


def test_prepare_runs_on_cpu_and_a_cpu_stage_takes_cpu_for_the_jobs_gpu_snapshot() -> None:
    text = JOB + "stages:\n  prepare: {run: launcher.recipes.digits:prepare, retries: 0}\n"
    (prepare,) = spec_of(text).stages
    assert (prepare.compute.gpu, prepare.retries.max_retries, prepare.snapshot) == ((), 0, "cpu")
    one_gpu = JOB.replace("gpu_count: 2", "gpu_count: 1").replace("snapshot: cpu", "snapshot: gpu")
    spec = spec_of(one_gpu + "stages:\n  evaluate: {run: launcher.recipes.digits:evaluate, "
                             "compute: {gpu: null}}\n")
    assert (spec.snapshot, spec.stages[0].compute.gpu, spec.stages[0].snapshot) == ("gpu", (), "cpu")


def test_a_job_without_stages_keeps_its_app_and_hash() -> None:
    spec = spec_of(JOB)
    assert "stages" not in spec.to_dict() and spec.stages == () and spec.pipeline == ("train",)
    assert JobSpec.from_dict(spec.to_dict()) == spec
    with_null = spec_of(JOB + "stages: {prepare: null}\n")  # removes a base's stage
    assert with_null.hash == spec.hash


def test_the_driver_outlives_its_stages_within_24h() -> None:
    spec = spec_of(JOB + "stages:\n  evaluate: {run: launcher.recipes.digits:evaluate, "
                         "compute: {timeout: 10m}, retries: 2}\n")
    # train: 2 attempts of 2h, a 0 s delay; evaluate: 3 attempts of 10m, delays 0 s and 0 s
    assert longest_s(spec) == 2 * 7200 + 3 * 600
    # The driver's clock also runs while each attempt starts up, which Modal keeps out of the
    # stage's timeout and limits to the timeout again (no startup_timeout set): twice each
    # attempt, and a margin for the driver's own work.
    assert driver_timeout_s(spec) == 2 * (7200 + 7200) + 3 * (600 + 600) + DRIVER_MARGIN_S
    long = spec_of(JOB.replace("timeout: 2h", "timeout: 24h") +
                   "stages: {evaluate: {run: launcher.recipes.digits:evaluate}}\n")
    assert driver_timeout_s(long) == 86400
    checked = check(yamlpos.parse(JOB.replace("timeout: 2h", "timeout: 24h") +
                                  "stages: {evaluate: {run: launcher.recipes.digits:evaluate}}\n", "t.yaml"))
    assert [p.message for p in checked.warnings] == [
        "the stages can take 192h 5m (start-up limits and timeouts × attempts), but the driver "
        "that runs them stops at Modal's 24h limit; a run cut off there continues where it "
        "stopped when launched again"]


def test_the_plan_says_what_happens_past_modals_24h_limit() -> None:
    spec = spec_of(JOB.replace("timeout: 2h", "timeout: 8h") +
                   "stages: {evaluate: {run: launcher.recipes.digits:evaluate}}\n")
    lines = plan(spec, "t.yaml", "local").splitlines()
    assert "  driver    1 CPU, 1024 MiB; timeout 24h (per stage attempt" in "\n".join(lines)
    assert next(x for x in lines if x.startswith("  past 24h")) == (
        "  past 24h  the stages can take 64h 5m, but Modal stops the driver at 24h and does not "
        "restart it; the launcher does not stop the stage call it waited on, and the job's lease "
        "stays held until that call's last heartbeat is 24h old; what the stages committed stays "
        "on the volume, and launching again then continues (prepare skipped when unchanged, train "
        "resumed)")


def test_the_plan_shows_each_stage_the_driver_and_the_total() -> None:
    spec = spec_of(JOB +
                   "stages:\n  prepare: {run: launcher.recipes.digits:prepare, compute: {cpu: 2}}\n"
                   "  evaluate: {run: launcher.recipes.digits:evaluate, compute: {gpu: T4, timeout: 10m}}\n")
    lines = plan(spec, "t.yaml", "local").splitlines()
    start = lines.index(next(x for x in lines if x.startswith("pipeline")))
    assert lines[start:] == [
        "pipeline    prepare -> train -> evaluate: `launch` spawns the driver (a CPU function) "
        "that calls each stage in turn, so it runs on without this machine",
        "  prepare   launcher.recipes.digits:prepare; CPU only × 1 node, 2 CPU, 32768 MiB; "
        "timeout 2h, retries 1; GPU $0/h (CPU only)",
        "  train     launcher.recipes.digits:Digits; 2 × H100 × 1 node (fallbacks: A100-80GB), 8 CPU, "
        "32768 MiB per container; timeout 2h, retries 1; $7.90/h for 2 × H100, worst case $31.59 "
        "(2h × 2 attempts)",
        "  evaluate  launcher.recipes.digits:evaluate; 1 × T4 × 1 node, 8 CPU, 32768 MiB per container; "
        "timeout 10m, retries 1; $0.59/h for 1 × T4, worst case $0.20 (10m × 2 attempts)",
        "  driver    1 CPU, 1024 MiB; timeout 16h 45m (per stage attempt its start-up limit, "
        "Modal's default: the timeout, and its timeout; with retry delays, + 5m); no retries of "
        "its own; holds the job's lease to the end; time queued for capacity is under no limit "
        "and can outlast it",
        "cost total  worst case one launch $31.79 (every stage's GPU worst case; CPU stages and the "
        "driver are billed for CPU and memory only)",
    ]


def test_rerun_names_a_stage_of_the_spec() -> None:
    with pytest.raises(RunError, match=r"^t.yaml: --rerun prepare: the spec has no stages.prepare$"):
        check_rerun("t.yaml", spec_of(JOB), ("prepare",))


@pytest.mark.parametrize("value, error", [
    ("nope", "stages.prepare: the function returned str, not a mapping of metric names to numbers"),
    ({"acc": "high"}, "stages.prepare: metric 'acc' is 'high'; a stage function returns finite numbers only"),
    ({"acc": float("nan")}, "stages.prepare: metric 'acc' is nan; a stage function returns finite numbers only"),
    ({"ok": True}, "stages.prepare: metric 'ok' is True; a stage function returns finite numbers only"),
])
def test_anything_but_finite_numbers_is_a_protocol_violation(value: object, error: str) -> None:
    with pytest.raises(PermanentError) as caught:
        stages.metrics_of("prepare", value)
    assert str(caught.value) == error


def test_a_result_counts_only_with_its_marker_and_the_same_digest(tmp_path: Path) -> None:
    folders = stages.StageFolders(tmp_path, "job")
    assert stages.read_result(folders, "prepare") is None
    stages.write_result(folders, "prepare", {"digest": "abc", "data_digest": "d1", "metrics": {"n": 1}})
    assert stages.read_result(folders, "prepare") == {"digest": "abc", "data_digest": "d1", "metrics": {"n": 1}}
    assert stages.data_digest(folders) == "d1"
    folders.marker("prepare").unlink()  # killed between the result and its marker
    assert stages.read_result(folders, "prepare") is None
    folders.marker("prepare").write_text('{"digest": "other"}')
    assert stages.read_result(folders, "prepare") is None


def test_the_digest_follows_the_section_the_seed_and_the_code() -> None:
    base = spec_of(JOB +
                   "stages: {prepare: {run: launcher.recipes.digits:prepare}}\n")
    def digest(text_change: tuple[str, str] = ("", ""), commit: str | None = None) -> str:
        text = JOB.replace(*text_change) + \
            "stages: {prepare: {run: launcher.recipes.digits:prepare}}\n"
        return stages.digest(stages.inputs(spec_of(text), "prepare", commit))
    same = stages.digest(stages.inputs(base, "prepare", None))
    assert digest() == same
    assert digest(("name: j", "name: j\n# a comment")) == same
    assert digest(("train: {", "train: {seed: 7, ")) != same
    assert digest(commit="a" * 40) != same != digest(commit="b" * 40)
    assert stages.code_version(base, "prepare", None).startswith("source:")


PREPARE = "stages: {prepare: {run: launcher.recipes.digits:prepare, config: {test_fraction: 0.2}}}\n"


@pytest.mark.parametrize("change", [
    ("stages: {prepare: {", "stages: {prepare: {retries: 2, "),
    ("retries: {max_retries: 1, initial_delay: 0s}", "retries: {max_retries: 1, initial_delay: 0s, max_delay: 20s}"),
    ("timeout: 2h", "timeout: 1h"),
    ("stages: {prepare: {", "stages: {prepare: {compute: {cpu: 2, memory: 4GiB, timeout: 5m}, "),
    ("stages: {prepare: {", "stages: {prepare: {snapshot: none, "),
])
def test_how_prepare_runs_is_not_part_of_its_digest(change: tuple[str, str]) -> None:
    # retries, compute and timeouts change how prepare runs, never the data it makes
    base = stages.digest(stages.inputs(spec_of(JOB + PREPARE), "prepare", None))
    changed = (JOB + PREPARE).replace(*change)
    assert changed != JOB + PREPARE
    assert stages.digest(stages.inputs(spec_of(changed), "prepare", None)) == base


def test_the_digest_follows_the_contents_of_the_declared_inputs(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LAUNCH_REPO_ROOT", str(tmp_path))
    (tmp_path / "data" / "sub").mkdir(parents=True)
    (tmp_path / "data" / "sub" / "rows.csv").write_text("a\nb\n")
    spec = spec_of(JOB + PREPARE.replace("config:", "inputs: [data/], config:"))
    assert spec.stage("prepare").inputs == ("data/",)
    first = stages.digest(stages.inputs(spec, "prepare", "c" * 40))
    assert stages.digest(stages.inputs(spec, "prepare", "c" * 40)) == first
    (tmp_path / "data" / "sub" / "rows.csv").write_text("a\nb\nc\n")
    assert stages.digest(stages.inputs(spec, "prepare", "c" * 40)) != first  # the commit alone is not enough
    (tmp_path / "data" / "sub" / "rows.csv").rename(tmp_path / "data" / "rows.csv")
    renamed = stages.digest(stages.inputs(spec, "prepare", "c" * 40))
    assert renamed not in (first,)
    assert stages.missing_inputs(spec, "prepare") is None
    monkeypatch.setenv("LAUNCH_REPO_ROOT", str(tmp_path / "elsewhere"))
    assert "stages.prepare.inputs: " in str(stages.missing_inputs(spec, "prepare"))


def test_a_spec_without_inputs_embeds_what_it_did_before() -> None:
    # No `inputs` key in the app's SPEC literal (and so no change to its spec hash) unless declared.
    assert "inputs" not in spec_of(JOB + PREPARE).to_dict()["stages"][0]
    assert spec_of(JOB + PREPARE.replace("config:", "inputs: [a], config:")).to_dict()["stages"][0]["inputs"] == ["a"]


def test_prepare_publishes_its_data_with_its_result_or_not_at_all(tmp_path: Path) -> None:
    folders = stages.StageFolders(tmp_path, "job")
    staging = stages.begin_prepare(folders)
    (staging / "rows.json").write_text("3")
    stages.publish_prepare(folders, {"digest": "i1", "metrics": {}})
    old = stages.data_digest(folders)
    assert old is not None and (folders.data / "rows.json").read_text() == "3"
    # a rerun that fails after writing: the old marker is gone, the old data untouched
    staging = stages.begin_prepare(folders)
    (staging / "rows.json").write_text("7")
    assert stages.read_result(folders, "prepare") is None
    assert (folders.data / "rows.json").read_text() == "3"
    # the next attempt starts from an empty staging folder, and publishes other data
    staging = stages.begin_prepare(folders)
    assert list(staging.iterdir()) == []
    (staging / "rows.json").write_text("5")
    stages.publish_prepare(folders, {"digest": "i1", "metrics": {}})
    assert (folders.data / "rows.json").read_text() == "5"
    assert stages.data_digest(folders) not in (None, old)  # same inputs, other data: train refuses
    assert sorted(p.name for p in folders.stage("prepare").iterdir()) == ["DONE", "result.json"]


def test_bad_and_missing_inputs_are_refused_where_the_spec_names_them(tmp_path: Path, monkeypatch, launch) -> None:
    monkeypatch.chdir(tmp_path)  # outside git: the repository is where launch runs
    (tmp_path / "Dockerfile.cuda").write_text("FROM python:3.11\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "out").symlink_to("/etc")
    (tmp_path / "job.yaml").write_text(
        JOB + "stages:\n  prepare:\n    run: launcher.recipes.digits:prepare\n"
              "    inputs: [data/, ../secrets, /etc/passwd, nothing/, out]\n")
    result = launch("check", "job.yaml")
    assert (result.code, result.out) == (1, "")
    assert result.err.splitlines()[:2] == [
        "job.yaml:10:21: $.stages.prepare.inputs[1]: '../secrets' leaves the repository: a stage's "
        "inputs are files in it, relative to its root",
        "job.yaml:10:33: $.stages.prepare.inputs[2]: '/etc/passwd' leaves the repository: a stage's "
        "inputs are files in it, relative to its root"]
    (tmp_path / "job.yaml").write_text(
        JOB + "stages:\n  prepare:\n    run: launcher.recipes.digits:prepare\n"
              "    inputs: [data/, nothing/, out]\n")
    for command in (("check",), ("--dry-run",)):
        result = launch(*command, "job.yaml")
        assert (result.code, result.out) == (1, "")
        assert result.err.splitlines()[:2] == [
            f"job.yaml:10:21: $.stages.prepare.inputs[1]: 'nothing/' is not in the repository "
            f"({tmp_path}); inputs are files and folders relative to its root",
            f"job.yaml:10:31: $.stages.prepare.inputs[2]: 'out' leads out of the repository "
            f"({tmp_path}) through a symbolic link; inputs are files and folders relative to its root"]
    result = launch("check", "job.yaml", "--set", "stages.prepare.inputs=data/")
    assert result.err.splitlines()[0] == ("--set stages.prepare.inputs=data/: $.stages.prepare.inputs: "
                                          "'data/' is not of type 'array'")
    result = launch("check", "job.yaml", "--set", "stages.prepare.inputs=[data/]")
    assert (result.code, result.err) == (0, "1 spec ok\n")
