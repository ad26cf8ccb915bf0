"""launch --dry-run --explain: each resolved field with its origin, then the cost lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from launcher.cost import breakdown
from launcher.explain import explain, origin
from launcher.spec.compose import compose
from launcher.spec.validate import validate

ROOT = Path(__file__).resolve().parent.parent
PRICES = json.loads((ROOT / "launcher" / "data" / "prices.json").read_text("utf-8"))
TABLE = {"date": "2026-01", "source": "a test table", "currency": "USD", "unit": "per GPU-hour",
         "gpu": {"L40S": 2.0, "H100": 4.0}}

BASE = """\
version: 1
name: base
compute:
  gpu: L40S
  cpu: 8
retries: 2
train:
  recipe: launcher.recipes.ppo:PPO
"""
JOB = """\
version: 1
extends: base.yaml
name: job
compute:
  gpu_count: 2
keep_warm:
  min_containers: 1
env: {A: "1"}
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, "utf-8")
    return path


def explained(path: Path, sets: tuple[str, ...] = (), table: dict = TABLE) -> str:
    doc = compose(path, sets, display=path.name)
    return explain(doc, validate(doc, check_recipe=False), table)


def test_every_field_with_the_file_the_base_the_flag_or_the_default(tmp_path) -> None:
    write(tmp_path, "base.yaml", BASE)
    job = write(tmp_path, "job.yaml", JOB)
    assert explained(job, ("train.steps=50",)) == """\
explain: job: each resolved field = value, and where the value came from
  budget_usd = null                                 default
  checkpoint.async = auto                           default
  checkpoint.every = 10m                            default
  checkpoint.every_steps = 100                      default
  checkpoint.keep_best = 0                          default
  checkpoint.keep_last = 3                          default
  checkpoint.mount = /checkpoints                   default
  checkpoint.resume = auto                          default
  checkpoint.volume = launcher-checkpoints          default
  compute.cloud = null                              default
  compute.cpu = 8                                   base.yaml:5
  compute.gpu = L40S                                base.yaml:4
  compute.gpu_count = 2                             job.yaml:5
  compute.memory = 16GiB                            default
  compute.nodes = 1                                 default
  compute.rdma = false                              default
  compute.region = null                             default
  compute.timeout = 4h                              default
  env.A = '1'                                       job.yaml:8
  environment = null                                default
  image.code = git                                  default
  image.dockerfile = Dockerfile.cuda                default
  image.git.ref = null                              default
  image.git.url = null                              default
  keep_warm.buffer_containers = 0                   default
  keep_warm.max_containers = null                   default
  keep_warm.min_containers = 1                      job.yaml:7
  keep_warm.scaledown_window = 5m                   default
  name = job                                        job.yaml:3
  notify = null                                     default
  retries.backoff_coefficient = 2.0                 default
  retries.initial_delay = 10s                       default
  retries.max_delay = 60s                           default
  retries.max_retries = 2                           base.yaml:6
  secrets = []                                      default
  snapshot = cpu                                    default
  sweep = null                                      default
  train.config = {}                                 default
  train.gradient_accumulation_steps = 1             default
  train.log_every = 10                              default
  train.mixed_precision = 'no'                      default
  train.recipe = launcher.recipes.ppo:PPO           base.yaml:8
  train.seed = 0                                    default
  train.steps = 50                                  --set train.steps=50
  train.tracker = tensorboard                       default
  train.validate_every = null                       default
  version = 1                                       job.yaml:1
cost (GPU only; prices 2026-01, a test table, USD per GPU-hour):
  per hour running    $4.00 (L40S at $2.0000 × 2 GPUs × 1 node)
  worst case launch   $48.00 (4h timeout × 3 attempts)
  keep-warm idle      $96.00 a day (1 container × 2 GPUs × 24h)
"""


def field(text: str, path: str) -> str:
    """The `value  origin` of one field line, whitespace collapsed."""
    line = next(l for l in text.splitlines() if l.startswith(f"  {path} = "))
    return " ".join(line.split()[2:])


def test_a_set_on_a_mapping_owns_what_it_sets_and_no_more(tmp_path) -> None:
    write(tmp_path, "base.yaml", BASE)
    job = write(tmp_path, "job.yaml", JOB)
    text = explained(job, ("compute={gpu: H100, timeout: 1h}",))
    flag = "--set compute={gpu: H100, timeout: 1h}"
    assert field(text, "compute.gpu") == f"H100 {flag}"
    assert field(text, "compute.timeout") == f"1h {flag}"
    assert field(text, "compute.cpu") == "4 default"  # the flag replaced the whole mapping
    assert "compute.gpu_count = 1" in text


def test_a_retries_mapping_without_max_retries_leaves_it_default(tmp_path) -> None:
    job = write(tmp_path, "job.yaml", "version: 1\nname: j\nretries: {initial_delay: 5s}\n"
                                      "train: {recipe: 'launcher.recipes.ppo:PPO'}\n")
    text = explained(job)
    assert field(text, "retries.max_retries") == "3 default"
    assert field(text, "retries.initial_delay") == "5s job.yaml:3"
    doc = compose(job)
    assert origin(doc, ("retries", "max_delay")) == "default"


def test_lists_and_odd_values_print_as_yaml(tmp_path) -> None:
    job = write(tmp_path, "job.yaml", "version: 1\nname: j\ncompute: {gpu: [H100, L40S]}\n"
                                      "secrets: [wandb]\ntrain:\n  recipe: launcher.recipes.ppo:PPO\n"
                                      "  config: {lr: 0.001, note: 'yes'}\n")
    text = explained(job)
    assert field(text, "compute.gpu") == "[H100, L40S] job.yaml:3"
    assert field(text, "secrets") == "[wandb] job.yaml:4"
    assert field(text, "train.config.lr") == "0.001 job.yaml:7"
    assert field(text, "train.config.note") == "'yes' job.yaml:7"
    assert "extends" not in text


def spec_of(tmp_path: Path, compute: str, extra: str = "") -> object:
    job = write(tmp_path, "job.yaml", f"version: 1\nname: j\ncompute: {compute}\n{extra}"
                                      "train: {recipe: 'launcher.recipes.ppo:PPO'}\n")
    return validate(compose(job), check_recipe=False)


def test_cost_multi_node_with_fallbacks_and_keep_warm(tmp_path) -> None:
    spec = spec_of(tmp_path, "{gpu: [H100, L40S], gpu_count: 8, nodes: 2, timeout: 90m}",
                   "retries: 0\nkeep_warm: {min_containers: 4}\n")
    assert breakdown(spec, TABLE) == [
        "cost (GPU only; prices 2026-01, a test table, USD per GPU-hour):",
        "  per hour running    $64.00 (H100 at $4.0000 × 8 GPUs × 2 nodes; priced at the first "
        "choice of 2)",
        "  worst case launch   $96.00 (90m timeout × 1 attempt)",
        "  keep-warm idle      $3,072.00 a day (4 containers × 8 GPUs × 24h)",
    ]


def test_cost_with_no_price_on_file(tmp_path) -> None:
    spec = spec_of(tmp_path, "{gpu: A10, gpu_count: 4}")
    assert breakdown(spec, TABLE)[1:] == [
        "  per hour running    unknown (no price on file for A10 × 4 GPUs × 1 node)",
        "  worst case launch   unknown (4h timeout × 4 attempts)",
        "  keep-warm idle      unknown a day (0 containers × 4 GPUs × 24h)",
    ]


def test_cost_on_cpu_only(tmp_path) -> None:
    spec = spec_of(tmp_path, "{cpu: 2}")
    assert breakdown(spec, TABLE)[1:] == [
        "  CPU only: no GPU cost (CPU and memory are billed too, not priced here)"]


def test_the_cli_prints_plan_then_explain_on_stderr_and_the_same_app(launch, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    plain = launch("--dry-run", "jobs/ppo-multi-gpu.yaml")
    result = launch("--dry-run", "--explain", "jobs/ppo-multi-gpu.yaml", "--set", "train.steps=7")
    assert result.code == 0
    assert result.out == launch("--dry-run", "jobs/ppo-multi-gpu.yaml", "--set", "train.steps=7").out
    lines = result.err.splitlines()
    start = lines.index("explain: ppo-multi-gpu: each resolved field = value, and where the value "
                        "came from")
    assert lines[0].startswith("plan: ppo-multi-gpu from jobs/ppo-multi-gpu.yaml")
    assert len(plain.err.splitlines()) == start  # the plan (and note) come first, unchanged
    fields = {" ".join(l.split()[:3]): l.split()[-1] for l in lines[start + 1:] if " = " in l}
    assert fields["compute.gpu_count = 4"] == "jobs/ppo-multi-gpu.yaml:9"
    assert fields["compute.memory = 32GiB"] == "jobs/base.yaml:8"
    assert fields["train.steps = 7"] == "train.steps=7"  # the last word of "--set train.steps=7"
    assert fields["snapshot = cpu"] == "default"
    assert lines[-4:] == [
        f"cost (GPU only; prices {PRICES['date']}, {PRICES['source']}, USD per GPU-hour):",
        "  per hour running    $15.80 (H100 at $3.9492 × 4 GPUs × 1 node; priced at the first "
        "choice of 2)",
        "  worst case launch   $252.75 (4h timeout × 4 attempts)",
        "  keep-warm idle      $0.00 a day (0 containers × 4 GPUs × 24h)",
    ]


def test_explain_needs_dry_run(launch, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    result = launch("jobs/ppo.yaml", "--explain")
    assert (result.code, result.out, result.err.splitlines()[-1]) == (
        2, "", "Error: --explain needs --dry-run")


def test_explain_imports_no_heavy_modules(tmp_path) -> None:
    # A recipe with a schema file beside it, so that validation itself imports nothing heavy.
    write(tmp_path, "lightrecipe.py", "class Light:\n    pass\n")
    write(tmp_path, "lightrecipe.Light.schema.json", '{"type": "object"}')
    write(tmp_path, "job.yaml", "version: 1\nname: j\ntrain: {recipe: 'lightrecipe:Light'}\n")
    write(tmp_path, "Dockerfile.cuda", "FROM scratch\n")  # a dry run needs the image's Dockerfile
    code = ("import sys; from launcher.cli import main; "
            "code = main(['--dry-run', '--explain', 'job.yaml']); "
            "heavy = {'torch', 'accelerate', 'modal'} & set(sys.modules); "
            "assert not heavy, heavy; sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "  train.recipe = lightrecipe:Light                  job.yaml:3\n" in done.stderr


@pytest.mark.parametrize("gpu", sorted(PRICES["gpu"]))
def test_every_price_on_file_is_a_positive_number_per_gpu_hour(gpu: str) -> None:
    assert PRICES["unit"] == "per GPU-hour" and PRICES["currency"] == "USD"
    assert isinstance(PRICES["gpu"][gpu], float) and PRICES["gpu"][gpu] > 0
