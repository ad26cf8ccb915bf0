"""The checks a JSON Schema cannot say: the format version, rules across fields, Modal's
deploy-time limits, and credentials wherever they are written.

Each rule reads the resolved spec (defaults applied, integers normalised) but tolerates values
of the wrong type, which the schema reports on its own.
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Callable, Iterator
from pathlib import PurePosixPath
from typing import Any

from launcher import __version__
from launcher.errors import Problem
from launcher.runtime.settings import PREFIX
from launcher.spec.credentials import (has_token, looks_like_credential, mask_tokens, url_has_credentials,
                                       url_has_query)
from launcher.spec import pipeline
from launcher.spec.model import JobSpec
from launcher.spec.units import rough_duration
from launcher.spec.yamlpos import Document, JsonPath, json_path, walk

FORMAT_VERSION = 1
RECIPE_REF = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*\Z")
RESERVED_ENV = PREFIX  # the runtime's own settings (checkpoint folder, fault injection, ...)
TO_SECRETS = "put it in a Modal Secret and list the secret's name under secrets:"

Rule = Callable[[dict[str, Any], Document], Iterator[Problem]]


def version_problem(raw: dict[str, Any], doc: Document) -> Problem | None:
    """Checked before anything else: a newer format is not judged by this launcher's schema."""
    version = raw.get("version")
    where = doc.where(("version",))
    if "version" not in raw:
        return Problem(doc.where(()), "$", "missing required key 'version' (add 'version: 1')")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        return Problem(where, "$.version",
                       f"format version {version} needs a newer launcher "
                       f"(launcher {__version__} reads format version {FORMAT_VERSION})")
    if version != FORMAT_VERSION or not isinstance(version, int) or isinstance(version, bool):
        return Problem(where, "$.version", f"{version!r} is not a format version (use 1)")
    return None


def _get(value: Any, path: JsonPath, kind: type | tuple[type, ...]) -> Any:
    """The value at `path` if every step exists and the leaf is of `kind`, else None."""
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    if isinstance(value, bool) and kind is int:
        return None
    return value if isinstance(value, kind) else None


def _at(doc: Document, path: JsonPath, message: str, key: bool = False) -> Problem:
    return Problem(doc.where(path, key=key), json_path(path), message)


def _values_json_holds(raw: dict[str, Any], doc: Document) -> Iterator[Problem]:  # noqa: ARG001  a Rule
    for path, value in walk(doc.value):
        if isinstance(value, float) and not math.isfinite(value):
            yield _at(doc, path, f"{value!r} is not a finite number")
        if isinstance(value, (datetime.date, bytes)):  # YAML timestamps and !!binary: not JSON
            kind = "binary data" if isinstance(value, bytes) else "a date"
            yield _at(doc, path, f"YAML reads this as {kind}, which a spec cannot hold; "
                                 "quote it to make it a string")


def _gpu_count_and_nodes(raw: dict[str, Any], doc: Document) -> Iterator[Problem]:
    nodes = _get(raw, ("compute", "nodes"), int) or 1
    has_gpu = _get(raw, ("compute", "gpu"), (str, list)) is not None
    count = _get(raw, ("compute", "gpu_count"), int)
    if nodes > 1 and not has_gpu:
        yield _at(doc, ("compute", "nodes"), f"multi-node (nodes: {nodes}) needs a GPU; set compute.gpu")
    if nodes > 1 and has_gpu and count is not None and count != 8:
        yield _at(doc, ("compute", "gpu_count"),
                  f"multi-node needs a full host per node: gpu_count must be 8, not {count}")


def _containers(raw: dict[str, Any], doc: Document) -> Iterator[Problem]:
    """Modal refuses these at deploy: a minimum above the maximum, and counts of a cluster's
    containers that are not whole clusters."""
    nodes = _get(raw, ("compute", "nodes"), int) or 1
    least = _get(raw, ("keep_warm", "min_containers"), int)
    most = _get(raw, ("keep_warm", "max_containers"), int)
    if least is not None and most is not None and least > most:
        yield _at(doc, ("keep_warm", "min_containers"),
                  f"{least} is more than keep_warm.max_containers ({most})")
    for key in ("min_containers", "max_containers", "buffer_containers"):
        amount = _get(raw, ("keep_warm", key), int)
        if amount is not None and nodes > 1 and amount % nodes:
            yield _at(doc, ("keep_warm", key), f"{amount} is not a multiple of compute.nodes ({nodes})")


def _snapshot(raw: dict[str, Any], doc: Document) -> Iterator[Problem]:
    if _get(raw, ("snapshot",), str) != "gpu":
        return
    if _get(raw, ("compute", "gpu"), (str, list)) is None:
        yield _at(doc, ("snapshot",), "a GPU snapshot needs a GPU; set compute.gpu or use snapshot: cpu")
        return
    count = _get(raw, ("compute", "gpu_count"), int) or 1
    nodes = _get(raw, ("compute", "nodes"), int) or 1
    if count * nodes > 1:
        # Several processes place the model only after the snapshot (each in its own forked
        # worker), so the snapshot would hold no device state: say so rather than pretend.
        what = f"gpu_count: {count}" if nodes == 1 else f"nodes: {nodes} × gpu_count: {count}"
        yield _at(doc, ("snapshot",),
                  f"a GPU snapshot needs a single training process, and {what} runs "
                  f"{count * nodes}; use snapshot: cpu (stage 1 is still snapshotted)")


def _checkpoint(raw: dict[str, Any], doc: Document) -> Iterator[Problem]:
    ckpt = _get(raw, ("checkpoint",), dict)
    if ckpt is not None and ckpt.get("every_steps") is None and ckpt.get("every") is None:
        yield _at(doc, ("checkpoint",), "set at least one of every_steps and every, "
                                        "or checkpoints are never written")
    count = _get(raw, ("compute", "gpu_count"), int) or 1
    nodes = _get(raw, ("compute", "nodes"), int) or 1
    if ckpt is not None and ckpt.get("async") is True and count * nodes > 1:
        yield _at(doc, ("checkpoint", "async"),
                  f"true needs a single training process, and this spec runs {count * nodes} "
                  "(every rank takes part in each save); use auto, which writes in the loop there")


def _volume_name(raw: dict[str, Any], doc: Document) -> Iterator[Problem]:
    """'.' and '..' match the schema's pattern, but as a folder they are the volumes folder itself
    or the one above it: checkpoints would land outside any volume, among other volumes' folders."""
    volume = _get(raw, ("checkpoint", "volume"), str)
    if volume in (".", ".."):
        yield _at(doc, ("checkpoint", "volume"),
                  f"{volume!r} is a path component, not a volume name: use letters, digits, "
                  "'.', '_' and '-', e.g. launcher-checkpoints")


def _recipe(raw: dict[str, Any], doc: Document) -> Iterator[Problem]:
    recipe = _get(raw, ("train", "recipe"), str)
    if recipe is not None and not RECIPE_REF.match(recipe):
        yield _at(doc, ("train", "recipe"), f"{recipe!r} is not a recipe reference: use "
                                            "module:Class, e.g. launcher.recipes.ppo:PPO")


def _stages(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The stage sections that are mappings (the schema reports the others)."""
    stages = _get(raw, ("stages",), dict) or {}
    return {name: stage for name, stage in stages.items() if isinstance(stage, dict)}


def _stage_runs(raw: dict[str, Any], doc: Document) -> Iterator[Problem]:
    for name, stage in _stages(raw).items():
        run = stage.get("run")
        if isinstance(run, str) and not RECIPE_REF.match(run):
            yield _at(doc, ("stages", name, "run"), f"{run!r} is not a stage function reference: "
                                                    f"use module:function, e.g. "
                                                    f"launcher.recipes.digits:{name}")


def _stage_gpus(raw: dict[str, Any], doc: Document) -> Iterator[Problem]:
    """A GPU count or a GPU snapshot on a stage that runs on CPU (its own gpu, or the job's it
    inherits, is null)."""
    for name, stage in _stages(raw).items():
        if _get(stage, ("compute", "gpu"), (str, list)) is not None:
            continue
        written = _get(doc.value, ("stages", name), dict) or {}
        compute = written.get("compute") if isinstance(written.get("compute"), dict) else {}
        why = ("prepare runs on CPU unless it names one" if name == "prepare" else
               "it inherits compute.gpu, which is null" if "gpu" not in compute
               else "its gpu is null")
        if "gpu_count" in compute:
            yield _at(doc, ("stages", name, "compute", "gpu_count"),
                      f"a GPU count needs a GPU type: set stages.{name}.compute.gpu ({why})")
        if written.get("snapshot") == "gpu":
            yield _at(doc, ("stages", name, "snapshot"),
                      f"a GPU snapshot needs a GPU: set stages.{name}.compute.gpu ({why}) "
                      "or use snapshot: cpu")


def _prepare_and_gpu_snapshot(raw: dict[str, Any], doc: Document) -> Iterator[Problem]:
    if _get(raw, ("snapshot",), str) == "gpu" and "prepare" in _stages(raw):
        yield _at(doc, ("snapshot",), "a GPU snapshot runs the recipe's setup() before the "
                                      "snapshot, where prepare's data cannot be read yet (it "
                                      "is read after the volume reload); use snapshot: cpu "
                                      "with stages.prepare")


def leaves_repository(path: str) -> bool:
    """Whether a path the spec gives relative to the repository root could name something
    outside it: absolute, or a `..` component anywhere."""
    pure = PurePosixPath(path.replace("\\", "/"))
    return pure.is_absolute() or ".." in pure.parts


def _repo_paths(raw: dict[str, Any], doc: Document) -> Iterator[Problem]:
    """The Dockerfile (whose build context is the repository) and a stage's input files are
    read from the repository, never from beside it (`../../../etc/passwd`)."""
    dockerfile = _get(raw, ("image", "dockerfile"), str)
    # an absolute path is refused by the schema's pattern already
    if dockerfile is not None and ".." in PurePosixPath(dockerfile).parts:
        yield _at(doc, ("image", "dockerfile"), f"{dockerfile!r} leaves the repository: the "
                                                "Dockerfile and its build context stay inside it; "
                                                "give a path relative to the repository root")
    for name, stage in _stages(raw).items():
        for i, item in enumerate(_get(stage, ("inputs",), list) or []):
            if isinstance(item, str) and leaves_repository(item):
                yield _at(doc, ("stages", name, "inputs", i),
                          f"{item!r} leaves the repository: a stage's inputs are files in it, "
                          "relative to its root")


def _git_url_with_user(path: JsonPath, value: str) -> bool:
    """A git URL with user info or a query gets its own message (below), not the token one."""
    return path == ("image", "git", "url") and (url_has_credentials(value) or url_has_query(value))


def _git_url(raw: dict[str, Any], doc: Document) -> Iterator[Problem]:
    url = _get(raw, ("image", "git", "url"), str)
    if url is not None and url_has_credentials(url):  # never echoed: it would print the token
        yield _at(doc, ("image", "git", "url"), "holds credentials (user info before @); leave them "
                                                "out: the code is exported from this repository, "
                                                "and the URL is only shown, never fetched")
    elif url is not None and url_has_query(url):  # never echoed: an opaque token hides there
        yield _at(doc, ("image", "git", "url"), "holds a query or fragment (after ? or #); leave it "
                                                "out: the URL is provenance (scheme, host and path), "
                                                "only shown, never fetched")


def _env_names(raw: dict[str, Any], doc: Document) -> Iterator[Problem]:
    for name in _get(raw, ("env",), dict) or {}:
        if not isinstance(name, str):
            continue
        if looks_like_credential(name):
            yield _at(doc, ("env", name), f"{name!r} looks like a credential: {TO_SECRETS}", key=True)
        if name.upper().startswith(RESERVED_ENV):
            yield _at(doc, ("env", name), f"{name!r} is reserved: {RESERVED_ENV}* variables "
                                          "configure launcher's runtime; use another name", key=True)


def _config_names(raw: dict[str, Any], doc: Document) -> Iterator[Problem]:
    """A recipe's or a stage's setting named like a credential would be stored in the app like
    any other."""
    configs = [("train", "config")] + [("stages", name, "config") for name in _stages(raw)]
    for base in configs:
        for path, _ in walk(_get(raw, base, dict) or {}, base):
            name = path[-1]
            if len(path) > len(base) and isinstance(name, str) \
                    and looks_like_credential(name, bare_key=False):
                yield _at(doc, path, f"{name!r} looks like a credential: {TO_SECRETS}", key=True)


def _tokens(raw: dict[str, Any], doc: Document) -> Iterator[Problem]:  # noqa: ARG001  a Rule
    """A token written anywhere in a spec would be stored in the app and shown in every plan."""
    for path, value in walk(doc.value):
        if path and isinstance(path[-1], str) and has_token(path[-1]):
            yield _at(doc, path, f"key {mask_tokens(path[-1])!r} looks like a credential token: "
                                 f"{TO_SECRETS}", key=True)
        if isinstance(value, str) and has_token(value) and not _git_url_with_user(path, value):
            yield _at(doc, path, f"{mask_tokens(value)!r} looks like a credential token: {TO_SECRETS}")


def _notify(raw: dict[str, Any], doc: Document) -> Iterator[Problem]:
    """Exactly one place for the webhook's URL (said here: the schema's oneOf would say less)."""
    notify = _get(raw, ("notify",), dict)
    if notify is not None and (notify.get("url") is None) == (notify.get("url_env") is None):
        yield _at(doc, ("notify",), "give exactly one of url_env (an environment variable a secret "
                                    "sets: preferred) and url")


RULES: tuple[Rule, ...] = (_values_json_holds, _gpu_count_and_nodes, _containers, _snapshot,
                           _checkpoint, _volume_name, _recipe, _stage_runs, _stage_gpus,
                           _prepare_and_gpu_snapshot, _git_url, _env_names, _config_names, _tokens,
                           _repo_paths, _notify)


def problems(raw: dict[str, Any], doc: Document) -> Iterator[Problem]:
    for rule in RULES:
        yield from rule(raw, doc)


def warnings(spec: JobSpec) -> list[tuple[JsonPath, str]]:
    """What is valid but will not do what it says: (path, message), for check and the plan."""
    found = []
    if spec.compute.rdma and spec.compute.nodes == 1:
        found.append((("compute", "rdma"), "true has no effect with compute.nodes 1: Modal drops "
                                           "RDMA outside a cluster (nodes > 1)"))
    if spec.stages and pipeline.bound_s(spec) > pipeline.MODAL_MAX_TIMEOUT_S:
        found.append((("stages",), f"the stages can take {rough_duration(pipeline.bound_s(spec))} "
                                   "(start-up limits and timeouts × attempts), but the driver that "
                                   "runs them stops at Modal's 24h limit; a run cut off there "
                                   "continues where it stopped when launched again"))
    return found
