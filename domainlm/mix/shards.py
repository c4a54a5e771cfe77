"""Tokenized sources + allocation -> shuffled training shards, packed validation files, manifest.json.

Source k's training tokens are cut into whole `seq_len` sequences (the tail shorter than one is
dropped). The mix takes `n_k` of them: all of them `n_k // P_k` times (repeats), plus a seeded
random subset for a partial last pass. The S = sum(n_k) chosen sequences are numbered globally
(source blocks back to back) and written in the order of a seeded permutation of range(S), which
is evaluated block by block (`Permutation`), so nothing of size S or of the corpus is held in RAM:
the shard writer copies one block of sequences at a time out of memmapped source files.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from domainlm.mix import layout
from domainlm.mix.allocate import Allocation
from domainlm.mix.permutation import Permutation
from domainlm.mix.sources import SourceTokens
from domainlm.outputs import file_sha256

BLOCK_TOKENS = 1 << 22  # tokens copied per block: 8 MiB of uint16, bounded whatever the mix size


@dataclass(frozen=True)
class ShardSpec:
    path: str  # relative to the mix directory
    num_sequences: int
    sha256: str


class SequenceSource:
    """Maps global sequence ids (0..S-1, source blocks back to back) to (source, token offset)."""

    def __init__(self, allocations: list[Allocation], seed: int) -> None:
        self.allocations = allocations
        self.starts = np.cumsum([0] + [a.sequences for a in allocations])
        # The partial last pass takes a seeded random subset of a source's sequences.
        self.partial = [Permutation(a.available_sequences, f"{seed}/partial/{a.name}") for a in allocations]

    def locate(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(source index, first token offset in that source's file) for each global sequence id."""
        src = np.searchsorted(self.starts, ids, side="right") - 1
        offsets = np.empty(len(ids), dtype=np.int64)
        for k, alloc in enumerate(self.allocations):
            mask = src == k
            if not mask.any():
                continue
            within = ids[mask] - self.starts[k]
            one_pass = alloc.available_sequences
            seq = within % one_pass
            in_partial = within // one_pass == alloc.sequences // one_pass
            if in_partial.any():
                seq[in_partial] = self.partial[k](seq[in_partial])
            offsets[mask] = seq * alloc.seq_len
        return src, offsets


class _Gatherer:
    """Copies chosen sequences out of the per-source token files into one block array.

    pread, not memmap: mapped pages that were touched count in the process RSS, which would then
    grow with the corpus; a read straight into the block costs one syscall (~2 us) per sequence.
    """

    def __init__(self, sources: list[SourceTokens], seq_len: int, dtype: np.dtype) -> None:
        self.fds = [os.open(s.train_path, os.O_RDONLY) for s in sources]
        self.seq_len, self.dtype = seq_len, dtype

    def gather(self, src: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        block = np.empty((len(src), self.seq_len), dtype=self.dtype)
        row_bytes = self.seq_len * self.dtype.itemsize
        for row, (k, offset) in enumerate(zip(src.tolist(), offsets.tolist(), strict=True)):
            read = os.preadv(self.fds[k], [block[row]], offset * self.dtype.itemsize)
            assert read == row_bytes, "source token file shorter than its allocation"
        return block

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)


def write_train_shards(
    out_dir: Path,
    allocations: list[Allocation],
    sources: list[SourceTokens],
    dtype: np.dtype,
    seed: int,
    shard_tokens: int,
    on_block: Callable[[int], None] | None = None,
) -> list[ShardSpec]:
    """Write `train/shard_NNNNN.bin` files of whole sequences in seeded shuffled order."""
    seq_len = allocations[0].seq_len
    total = sum(a.sequences for a in allocations)
    per_shard = max(1, shard_tokens // seq_len)
    per_block = max(1, min(per_shard, BLOCK_TOKENS // seq_len))
    locator = SequenceSource(allocations, seed)
    shuffle = Permutation(total, f"{seed}/shuffle")
    gatherer = _Gatherer(sources, seq_len, dtype)
    (out_dir / "train").mkdir(parents=True, exist_ok=True)
    shards: list[ShardSpec] = []
    try:
        for first in range(0, total, per_shard):
            count = min(per_shard, total - first)
            relative = layout.shard_path(len(shards))
            digest = hashlib.sha256()
            with open(out_dir / relative, "wb") as handle:
                for start in range(first, first + count, per_block):
                    stop = min(start + per_block, first + count)
                    data = gatherer.gather(*locator.locate(shuffle(np.arange(start, stop)))).tobytes()
                    digest.update(data)
                    handle.write(data)
                    if on_block is not None:
                        on_block(stop - start)
            shards.append(ShardSpec(relative, count, digest.hexdigest()))
    finally:
        gatherer.close()
    return shards


def pack_val(source: SourceTokens, seq_len: int, dtype: np.dtype) -> int:
    """Cut the held-out token file down to whole sequences (in document order); return their number."""
    assert source.val_path is not None
    sequences = source.val_tokens // seq_len
    os.truncate(source.val_path, sequences * seq_len * dtype.itemsize)
    return sequences


def _val_entry(source: SourceTokens, sequences: int) -> dict:
    return {
        "documents": source.val_documents,
        "tokens": source.val_tokens,
        "bytes": source.val_bytes,
        "sequences": sequences,
        "path": layout.val_token_path(source.name),
        "text_path": layout.val_text_path(source.name),
    }


def source_entry(alloc: Allocation, source: SourceTokens, val_sequences: int) -> dict:
    return {
        "name": alloc.name,
        "paths": source.files,
        "fingerprint": source.fingerprint,
        "documents": source.documents,
        "available_tokens": alloc.available_tokens,
        "target_ratio": alloc.target_ratio,
        "tokens_taken": alloc.tokens_taken,
        "repeats": round(alloc.repeats, 6),
        "realized_ratio": round(alloc.realized_ratio, 9),
        "val": _val_entry(source, val_sequences),
        "read": source.read,
    }


def output_fingerprint(manifest: dict, out_dir: Path) -> str:
    """sha256 over what defines the data: format, shape, tokenizer, every shard and val file.

    Paths and the read report are left out, so a copied or moved mix keeps its fingerprint.
    """
    digest = hashlib.sha256()
    for key in ("format", "seq_len", "dtype", "vocab_size", "eos_token_id"):
        digest.update(f"{key}={manifest[key]}\n".encode())
    digest.update(f"tokenizer={manifest['tokenizer']['fingerprint']}\n".encode())
    for shard in manifest["train"]["shards"]:
        digest.update(f"{shard['path']}={shard['sha256']}\n".encode())
    for source in manifest["sources"]:
        for key in ("path", "text_path"):
            relative = source["val"][key]
            digest.update(f"{relative}={file_sha256(out_dir / relative)}\n".encode())
    return digest.hexdigest()


def build_manifest(
    out_dir: Path,
    config: dict,
    tokenizer: dict,
    allocations: list[Allocation],
    sources: list[SourceTokens],
    val_sequences: list[int],
    shards: list[ShardSpec],
) -> dict:
    """The manifest dict (contract A); the caller writes it last, after every data file."""
    seq_len = allocations[0].seq_len
    total = sum(a.sequences for a in allocations)
    manifest = {
        "format": layout.FORMAT,
        "seq_len": seq_len,
        "dtype": tokenizer["dtype"],
        "vocab_size": tokenizer["vocab_size"],
        "eos_token_id": tokenizer["eos_token_id"],
        "seed": config["seed"],
        "tokenizer": {k: tokenizer[k] for k in ("path", "fingerprint", "eos_token")},
        "config": config,
        "sources": [
            source_entry(a, s, v) for a, s, v in zip(allocations, sources, val_sequences, strict=True)
        ],
        "train": {
            "num_sequences": total,
            "num_tokens": total * seq_len,
            "shards": [
                {"path": s.path, "num_sequences": s.num_sequences, "sha256": s.sha256} for s in shards
            ],
        },
    }
    manifest["fingerprint"] = output_fingerprint(manifest, out_dir)
    return manifest
