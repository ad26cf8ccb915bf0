"""The records of a W&B run's transaction log (`run-<id>.wandb`), read with W&B's own protobuf
messages, for tests of offline runs.

An offline run keeps its config, history and summary only there. The wandb package no longer
ships a reader for it (`wandb.sdk.internal.datastore` is gone from 0.2x on); the framing is
LevelDB's log format behind a 7-byte W&B header: 32 KiB blocks of chunks, each with a 7-byte
header (CRC, little-endian length, type: 1 full, 2 first, 3 middle, 4 last).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BLOCK = 32 * 1024
HEADER = 7
W_AND_B = b":W&B"
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def chunks(data: bytes) -> Iterator[bytes]:
    """Each record's bytes, its chunks joined."""
    assert data[:4] == W_AND_B, "not a W&B transaction log"
    pos, pending = HEADER, b""
    while pos + HEADER <= len(data):
        room = BLOCK - pos % BLOCK
        if room < HEADER:  # the rest of a block is padding
            pos += room
            continue
        length, kind = struct.unpack("<HB", data[pos + 4:pos + HEADER])
        if length == 0 and kind == 0:  # zero padding at the end
            break
        body = data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind == FULL:
            yield body
        elif kind == FIRST:
            pending = body
        elif kind == MIDDLE:
            pending += body
        elif kind == LAST:
            yield pending + body
            pending = b""


def records(path: Path) -> list[Any]:
    """The run's records, as wandb_internal_pb2.Record messages."""
    from wandb.proto import wandb_internal_pb2

    found = []
    for raw in chunks(path.read_bytes()):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        found.append(record)
    return found


def _items(items: Any) -> dict[str, Any]:
    import json

    return {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in items}


def run_config(found: list[Any]) -> dict[str, Any]:
    """The run's config: what `wandb.init` got, then each update."""
    config: dict[str, Any] = {}
    for record in found:
        kind = record.WhichOneof("record_type")
        if kind == "run":
            config.update(_items(record.run.config.update))
        elif kind == "config":
            config.update(_items(record.config.update))
    return config


def history(found: list[Any]) -> list[dict[str, Any]]:
    """Each `log` call's values, `_step` included, in order."""
    return [_items(r.history.item) for r in found if r.WhichOneof("record_type") == "history"]
