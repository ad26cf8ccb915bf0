"""Every rendered example is a Modal app that modal itself accepts, offline and without an account.

Function.info() (modal 1.6) shows what Modal was asked for; the kwargs it does not show (keep-warm,
snapshot flags, retry delays) are read from what the app passed to `app.cls`.
"""

from __future__ import annotations

import datetime
import importlib.util
import os
import re
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import modal
import pytest

from launcher.load import load_spec
from launcher.render import CodeSource, render
from launcher.spec.model import JobSpec
from regen_golden import GOLDEN, ROOT, golden_cases, render_case

GIT = CodeSource("git", "https://example.com/team/repo.git", "0" * 40)
EXAMPLES = [f"jobs/{p.name}" for p in sorted((ROOT / "jobs").glob("*.yaml"))] + \
           [f"golden/{case}" for case in golden_cases()]
# Removed or deprecated in modal 1.x (Modal's changelog): a generated app must never use them.
NEVER = ["keep_warm=", "concurrency_limit", "container_idle_timeout", "allow_concurrent_inputs",
         "mounts=", "modal.gpu.", "modal.Stub", "max_inputs", "modal.experimental.clustered",
         "registered_"]


def example(name: str) -> tuple[JobSpec, str]:
    """The spec and the rendered app of `jobs/<file>` or `golden/<case>`."""
    kind, _, rest = name.partition("/")
    if kind == "golden":
        return load_spec(GOLDEN / rest / "spec.yaml").spec, render_case(rest)
    spec = load_spec(ROOT / name).spec
    return spec, render(spec, name, GIT)


@pytest.fixture(scope="module")
def app_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("apps")
    files = {}
    for name in EXAMPLES:
        files[name] = folder / (re.sub(r"\W", "_", name.removesuffix(".yaml")) + ".py")
        files[name].write_text(example(name)[1], "utf-8")
    return files


@pytest.fixture(scope="module")
def modal_help(app_files, tmp_path_factory) -> Iterator[dict[str, subprocess.Popen]]:
    """`modal run APP --help` for every example, started together so they share the two cores."""
    home = tmp_path_factory.mktemp("home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_")}
    env.update(LAUNCH_REPO_ROOT=str(ROOT), MODAL_CONFIG_PATH=str(home / "modal.toml"), HOME=str(home))
    running = {name: subprocess.Popen([sys.executable, "-m", "modal", "run", str(path), "--help"],
                                      cwd=home, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
               for name, path in app_files.items()}
    yield running
    for process in running.values():  # those a deselected or failed test never waited for
        if process.poll() is None:
            process.kill()
        process.communicate()


def import_app(path: Path, monkeypatch) -> tuple[object, list[dict]]:
    """Import a generated app as modal would; returns the module and every app.cls(...) kwargs."""
    calls: list[dict] = []
    original = modal.App.cls

    def recording(self, *args, **kwargs):
        calls.append(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(modal.App, "cls", recording)
    monkeypatch.setenv("LAUNCH_REPO_ROOT", str(ROOT))
    name = f"generated_{path.stem}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module_spec.loader.exec_module(module)
    assert [str(w.message) for w in caught] == []
    return module, calls


def secret_reprs(spec: JobSpec) -> list[str]:
    named = [f"modal.Secret.from_name({name!r})" for name in spec.secrets]
    return named + ([f"Secret.from_dict([{', '.join(sorted(spec.env))}])"] if spec.env else [])


@pytest.mark.parametrize("name", EXAMPLES)
def test_the_app_imports_and_asks_modal_for_what_the_spec_says(name: str, app_files, monkeypatch) -> None:
    spec, _ = example(name)
    module, calls = import_app(app_files[name], monkeypatch)
    info = module.Trainer._get_class_service_function().info()
    c = spec.compute
    assert info.gpus == [(gpu, c.gpu_count) for gpu in c.gpu]
    assert (info.cpu, info.memory_mib, info.timeout) == (c.cpu, c.memory_mib, c.timeout_s)
    assert info.max_retries == spec.retries.max_retries
    assert {path: mount.name for path, mount in info.volumes.items()} == \
        {spec.checkpoint.mount: spec.checkpoint.volume}
    assert info.secrets == secret_reprs(spec)
    assert info.cluster_info == (None if c.nodes == 1 else
                                 type(info).ClusterInfo(size=c.nodes, rdma=c.rdma, fabric_size=None))
    assert (info.regions, info.cloud) == (list(c.region) or None, c.cloud)
    assert info.method_names == ["train"]

    kwargs = calls[0]  # the Trainer's; a pipeline's stage classes follow, checked below
    assert len(calls) == 1 + len(spec.stages)
    k, r = spec.keep_warm, spec.retries
    assert {key: kwargs[key] for key in ("min_containers", "max_containers", "buffer_containers",
                                         "scaledown_window", "enable_memory_snapshot")} == {
        "min_containers": k.min_containers, "max_containers": k.max_containers,
        "buffer_containers": k.buffer_containers, "scaledown_window": k.scaledown_window_s,
        "enable_memory_snapshot": spec.snapshot != "none"}
    assert kwargs.get("experimental_options") == \
        ({"enable_gpu_snapshot": True} if spec.snapshot == "gpu" else None)
    assert vars(kwargs["retries"]) == {
        "max_retries": r.max_retries, "backoff_coefficient": r.backoff_coefficient,
        "initial_delay": datetime.timedelta(seconds=r.initial_delay_s),
        "max_delay": datetime.timedelta(seconds=r.max_delay_s)}
    assert kwargs["env"] == spec.env
    assert module.SPEC == spec.to_dict() and module.SPEC_HASH == spec.hash
    assert module.app.name == spec.name


PIPELINES = [name for name in EXAMPLES if example(name)[0].stages]


def retries_of(retries) -> dict:
    return {"max_retries": retries.max_retries, "backoff_coefficient": retries.backoff_coefficient,
            "initial_delay": datetime.timedelta(seconds=retries.initial_delay_s),
            "max_delay": datetime.timedelta(seconds=retries.max_delay_s)}


def test_there_are_pipeline_examples() -> None:
    assert {"jobs/digits.yaml", "jobs/ppo.yaml", "golden/pipeline-digits"} <= set(PIPELINES)


@pytest.mark.parametrize("name", PIPELINES)
def test_each_stage_and_the_driver_ask_modal_for_what_the_spec_says(name: str, app_files, monkeypatch) -> None:
    spec, _ = example(name)
    module, calls = import_app(app_files[name], monkeypatch)
    for stage, kwargs in zip(spec.stages, calls[1:], strict=True):
        cls = getattr(module, stage.name.capitalize())
        info = cls._get_class_service_function().info()
        c = stage.compute
        assert info.gpus == [(gpu, c.gpu_count) for gpu in c.gpu]
        assert (info.cpu, info.memory_mib, info.timeout) == (c.cpu, c.memory_mib, c.timeout_s)
        assert info.max_retries == stage.retries.max_retries
        assert {path: m.name for path, m in info.volumes.items()} == {spec.checkpoint.mount: spec.checkpoint.volume}
        assert info.secrets == secret_reprs(spec)
        assert (info.regions, info.cloud, info.cluster_info) == (list(c.region) or None, c.cloud, None)
        assert info.method_names == ["run"]
        assert vars(kwargs["retries"]) == retries_of(stage.retries)
        assert kwargs["enable_memory_snapshot"] == (stage.snapshot != "none")
        assert kwargs.get("experimental_options") == \
            ({"enable_gpu_snapshot": True} if stage.snapshot == "gpu" else None)
    driver = module.pipeline.info()
    assert (driver.gpus, driver.cpu, driver.memory_mib) == ([], 1.0, 1024)
    assert driver.timeout == min(stages_bound_s(module, spec), 86400) and driver.max_retries == 0
    assert {path: m.name for path, m in driver.volumes.items()} == {spec.checkpoint.mount: spec.checkpoint.volume}


def stages_bound_s(module, spec: JobSpec) -> int:
    """How long the driver may wait while every stage is within Modal's limits, as Modal reads
    them from the app: each attempt's start-up limit and its timeout (the driver's own clock
    counts both; the stage's timeout only the second), the delays, and the driver's margin."""
    from launcher.spec.pipeline import DRIVER_MARGIN_S

    total = DRIVER_MARGIN_S
    for cls, retries in [("Trainer", spec.retries), *[(s.name.capitalize(), s.retries) for s in spec.stages]]:
        info = getattr(module, cls)._get_class_service_function().info()
        attempts = 1 + info.max_retries
        assert info.max_retries == retries.max_retries
        total += (info.startup_timeout + info.timeout) * attempts + sum(retries.delay(n) for n in range(1, attempts))
    return int(total)


@pytest.mark.parametrize("name", PIPELINES)
def test_the_driver_outlasts_every_stage_within_its_start_up_and_run_limits(name: str, app_files,
                                                                            monkeypatch) -> None:
    spec, _ = example(name)
    module, _ = import_app(app_files[name], monkeypatch)
    stages = [getattr(module, cls)._get_class_service_function().info()
              for cls in ["Trainer", *[s.name.capitalize() for s in spec.stages]]]
    # Modal gives each attempt a start-up limit of its own, the timeout when none is set
    assert [info.startup_timeout for info in stages] == [info.timeout for info in stages]
    worst = sum((info.startup_timeout + info.timeout) * (1 + info.max_retries) for info in stages)
    assert module.pipeline.info().timeout >= min(worst, 86400)


@pytest.mark.parametrize("name", EXAMPLES)
def test_the_snapshot_stages_follow_the_spec(name: str) -> None:
    spec, app = example(name)
    snaps = [spec.snapshot != "none"] + [stage.snapshot != "none" for stage in spec.stages]
    assert app.count("@modal.enter(") == 2 * len(snaps)
    assert [f"@modal.enter(snap={snap})\n    def stage1" for snap in snaps] == \
        re.findall(r"@modal.enter\(snap=\w+\)\n    def stage1", app)
    assert app.count("@modal.enter(snap=False)\n    def stage2") == len(snaps)


@pytest.mark.parametrize("name", EXAMPLES)
def test_modal_run_help_accepts_the_app(name: str, modal_help) -> None:
    out, err = modal_help[name].communicate(timeout=120)
    assert (modal_help[name].returncode, err) == (0, "")
    if name in PIPELINES:  # `modal run APP` runs the pipeline's driver
        assert "--rerun TEXT" in out
    else:
        assert "--steps INTEGER" in out and "--resume / --no-resume" in out


@pytest.mark.parametrize("name", EXAMPLES)
def test_the_app_uses_no_removed_modal_api(name: str) -> None:
    app = example(name)[1]
    assert [word for word in NEVER if word in app] == []


def test_the_dockerfile_is_found_from_the_app_not_the_working_directory(tmp_path, monkeypatch) -> None:
    (tmp_path / "Dockerfile.cuda").write_text("FROM scratch\n")
    (tmp_path / "build" / "apps").mkdir(parents=True)
    path = tmp_path / "build" / "apps" / "anchored.py"
    path.write_text(example("golden/code-local")[1], "utf-8")
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("LAUNCH_REPO_ROOT", raising=False)
    module_spec = importlib.util.spec_from_file_location("generated_anchored", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    assert module._repo_root() == tmp_path.resolve()
    monkeypatch.setenv("LAUNCH_REPO_ROOT", str(ROOT))
    assert module._repo_root() == ROOT
