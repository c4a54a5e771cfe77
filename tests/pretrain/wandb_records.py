"""Reads a W&B run file (`run-<id>.wandb`) back: wandb 0.31 writes its records (protobuf, from
wandb.proto) in LevelDB's log framing and no longer ships a Python reader; this is the read side only,
for tests. Framing: a 7-byte file header (':W&B', magic 0xBEE1, version 0), then 32 KiB blocks of chunks,
each `crc32c u32 | length u16 | type u8 | payload` (type 1 whole, 2 first, 3 middle, 4 last)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

BLOCK = 32 * 1024
CHUNK_HEADER = 7
FILE_HEADER = b":W&B\xe1\xbe\x00"
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def payloads(path: Path) -> list[bytes]:
    data = path.read_bytes()
    assert data.startswith(FILE_HEADER), data[:7]
    records, pending, pos = [], b"", len(FILE_HEADER)
    while pos + CHUNK_HEADER <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < CHUNK_HEADER:  # the block's tail is padding
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + CHUNK_HEADER])
        if kind == 0 and length == 0:
            break
        payload = data[pos + CHUNK_HEADER : pos + CHUNK_HEADER + length]
        pos += CHUNK_HEADER + length
        if kind == FULL:
            records.append(payload)
        elif kind == FIRST:
            pending = payload
        elif kind == MIDDLE:
            pending += payload
        elif kind == LAST:
            records.append(pending + payload)
    return records


def history(path: Path) -> list[dict[str, float]]:
    """Each logged row as {tag: value} (with `_step`), in the order logged."""
    from wandb.proto import wandb_internal_pb2

    rows = []
    for payload in payloads(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        if record.WhichOneof("record_type") == "history":
            rows.append(
                {
                    item.key or "/".join(item.nested_key): json.loads(item.value_json)
                    for item in record.history.item
                }
            )
    return rows
