"""Tokenized sources + schedule -> shuffled training shards, source ids, packed validation files, manifest.

Source k's training tokens are cut into whole `seq_len` sequences (the tail shorter than one is
dropped). The mix takes `n_k` of them: all of them `n_k // P_k` times (repeats), plus a seeded
random subset for a partial last pass. That selection is one stream per source over the whole mix:
with phases, phase 0 takes the first positions of each source's stream, phase 1 the next, and so
on, so a later phase repeats a sequence only once the earlier ones have used the pass up. With more
than one phase a full pass walks the source in a seeded order, so a phase boundary cuts a source at
random, not at a point of its files (with one phase the pass is walked in file order, as before:
the phase's shuffle mixes it anyway, and a mix without phases keeps its bytes).

Shard order: the phases are laid out back to back (phase p holds global positions
[start_p, stop_p)); inside a phase the sequences are numbered source block after source block and
written in the order of a seeded permutation of that phase alone (`Permutation`, keyed
`{seed}/shuffle` for phase 0, as for a mix without phases, and `{seed}/shuffle/{p}` after), so no
sequence leaves its phase. A shard never straddles two phases (each phase starts a new shard, and
the manifest lists each phase's shards), so a trainer that runs the phases as separate stages can
be given one phase's shards. The permutation is evaluated block by block, so nothing of size S or
of the corpus is held in RAM: the shard writer copies one block of sequences at a time out of the
per-source token files.

Source ids: beside each `train/shard_NNNNN.bin` the writer puts `train/shard_NNNNN.source_ids`,
one uint8 per sequence of the shard, in the same order: the index of the sequence's source in the
manifest's `sources` list. The phase of global sequence i is the manifest phase whose
[start, stop) holds i. The file name does not end in `.bin`, so `train/*.bin` still names the
token shards only.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from domainlm.mix import layout
from domainlm.mix.allocate import Allocation, PhaseAllocation, Schedule
from domainlm.mix.permutation import Permutation
from domainlm.mix.sources import SourceTokens
from domainlm.outputs import file_sha256

BLOCK_TOKENS = 1 << 22  # tokens copied per block: 8 MiB of uint16, bounded whatever the mix size
SOURCE_ID_DTYPE = np.dtype("uint8")  # hence at most 256 sources (domainlm.mix.config.MAX_SOURCES)


@dataclass(frozen=True)
class ShardSpec:
    path: str  # relative to the mix directory
    num_sequences: int
    sha256: str
    source_ids_path: str
    source_ids_sha256: str


class Selection:
    """Source k's stream position j (over all phases) -> first token offset of the sequence it takes.

    Positions below `full passes x P_k` walk the source pass after pass (in file order, or in a
    seeded order when `ordered`); the rest (the partial last pass) take a seeded random subset.
    """

    def __init__(self, allocations: list[Allocation], seed: int, ordered: bool = False) -> None:
        self.allocations = allocations
        self.partial = [Permutation(a.available_sequences, f"{seed}/partial/{a.name}") for a in allocations]
        self.order = [Permutation(a.available_sequences, f"{seed}/order/{a.name}") for a in allocations]
        self.ordered = ordered

    def offsets(self, src: np.ndarray, positions: np.ndarray) -> np.ndarray:
        offsets = np.empty(len(src), dtype=np.int64)
        for k, alloc in enumerate(self.allocations):
            mask = src == k
            if not mask.any():
                continue
            within = positions[mask]
            one_pass = alloc.available_sequences
            seq = within % one_pass
            in_partial = within // one_pass == alloc.sequences // one_pass
            if in_partial.any():
                seq[in_partial] = self.partial[k](seq[in_partial])
            if self.ordered and not in_partial.all():
                seq[~in_partial] = self.order[k](seq[~in_partial])
            offsets[mask] = seq * alloc.seq_len
        return offsets


class ShardOrder:
    """Global position in shard order -> (source index, first token offset in that source's file)."""

    def __init__(self, schedule: Schedule, seed: int) -> None:
        self.phases = schedule.phases
        self.starts = np.array([p.start for p in self.phases], dtype=np.int64)
        self.shuffles = [Permutation(p.sequences, shuffle_key(seed, p.index)) for p in self.phases]
        self.selection = Selection(schedule.allocations, seed, ordered=len(self.phases) > 1)

    def _in_phase(self, phase: PhaseAllocation, shuffle: Permutation, local: np.ndarray):
        """Positions within one phase -> (source, position in the source's stream)."""
        ids = shuffle(local)  # the phase's sequences, numbered source block after source block
        blocks = np.cumsum([0, *phase.counts])
        src = np.searchsorted(blocks, ids, side="right") - 1
        stream = ids - blocks[src] + np.asarray(phase.offsets, dtype=np.int64)[src]
        return src, stream

    def locate(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        phase_of = np.searchsorted(self.starts, positions, side="right") - 1
        src = np.empty(len(positions), dtype=np.int64)
        stream = np.empty(len(positions), dtype=np.int64)
        for p, (phase, shuffle) in enumerate(zip(self.phases, self.shuffles, strict=True)):
            mask = phase_of == p
            if mask.any():
                src[mask], stream[mask] = self._in_phase(phase, shuffle, positions[mask] - phase.start)
        return src, self.selection.offsets(src, stream)


def shuffle_key(seed: int, phase: int) -> str:
    """Phase 0 keeps the key of a mix without phases, so such a mix's bytes did not change."""
    return f"{seed}/shuffle" if phase == 0 else f"{seed}/shuffle/{phase}"


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


class _ShardFile:
    """One shard and its source ids, written block by block with their checksums."""

    def __init__(self, out_dir: Path, index: int) -> None:
        self.path, self.ids_path = layout.shard_path(index), layout.source_ids_path(index)
        self.tokens = open(out_dir / self.path, "wb")  # noqa: SIM115 - closed in close()
        self.ids = open(out_dir / self.ids_path, "wb")  # noqa: SIM115 - closed in close()
        self.token_digest, self.ids_digest = hashlib.sha256(), hashlib.sha256()

    def write(self, block: np.ndarray, src: np.ndarray) -> None:
        data, ids = block.tobytes(), src.astype(SOURCE_ID_DTYPE).tobytes()
        self.token_digest.update(data)
        self.ids_digest.update(ids)
        self.tokens.write(data)
        self.ids.write(ids)

    def close(self) -> None:
        self.tokens.close()
        self.ids.close()

    def spec(self, count: int) -> ShardSpec:
        token_sha, ids_sha = self.token_digest.hexdigest(), self.ids_digest.hexdigest()
        return ShardSpec(self.path, count, token_sha, self.ids_path, ids_sha)


def write_train_shards(
    out_dir: Path,
    schedule: Schedule,
    sources: list[SourceTokens],
    dtype: np.dtype,
    seed: int,
    shard_tokens: int,
    on_block: Callable[[int], None] | None = None,
) -> list[ShardSpec]:
    """Write `train/shard_NNNNN.bin` (+ `.source_ids`) of whole sequences, phase by phase, each shuffled."""
    seq_len = schedule.allocations[0].seq_len
    per_shard = max(1, shard_tokens // seq_len)
    per_block = max(1, min(per_shard, BLOCK_TOKENS // seq_len))
    order = ShardOrder(schedule, seed)
    gatherer = _Gatherer(sources, seq_len, dtype)
    (out_dir / "train").mkdir(parents=True, exist_ok=True)
    shards: list[ShardSpec] = []
    try:
        cuts = [
            (first, min(per_shard, p.stop - first))
            for p in schedule.phases
            for first in range(p.start, p.stop, per_shard)
        ]
        for first, count in cuts:
            shard = _ShardFile(out_dir, len(shards))
            try:
                for start in range(first, first + count, per_block):
                    stop = min(start + per_block, first + count)
                    src, offsets = order.locate(np.arange(start, stop, dtype=np.int64))
                    shard.write(gatherer.gather(src, offsets), src)
                    if on_block is not None:
                        on_block(stop - start)
            finally:
                shard.close()
            shards.append(shard.spec(count))
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
    """sha256 over what defines the data: format, shape, tokenizer, phases, every shard, its source
    ids and every val file.

    Paths and the read report are left out, so a copied or moved mix keeps its fingerprint.
    """
    digest = hashlib.sha256()
    for key in ("format", "seq_len", "dtype", "vocab_size", "eos_token_id"):
        digest.update(f"{key}={manifest[key]}\n".encode())
    digest.update(f"tokenizer={manifest['tokenizer']['fingerprint']}\n".encode())
    for phase in manifest["phases"]:
        digest.update(f"phase {phase['name']}=[{phase['start']}, {phase['stop']})\n".encode())
    for shard in manifest["train"]["shards"]:
        digest.update(f"{shard['path']}={shard['sha256']}\n".encode())
        digest.update(f"{shard['source_ids_path']}={shard['source_ids_sha256']}\n".encode())
    for source in manifest["sources"]:
        for key in ("path", "text_path"):
            relative = source["val"][key]
            digest.update(f"{relative}={file_sha256(out_dir / relative)}\n".encode())
    return digest.hexdigest()


def phase_entry(phase: PhaseAllocation, names: list[str], total: int, shards: list[ShardSpec]) -> dict:
    """One phase: its range in shard order, its shards, tokens, and per source target and realized ratio."""
    starts = np.cumsum([0] + [s.num_sequences for s in shards])
    return {
        "index": phase.index,
        "name": phase.name,
        "start": phase.start,
        "stop": phase.stop,
        "num_sequences": phase.sequences,
        "num_tokens": phase.tokens,
        "target_share": phase.target_share,
        "realized_share": round(phase.sequences / total, 9),
        "shards": [
            s.path
            for s, first in zip(shards, starts.tolist(), strict=False)
            if phase.start <= first < phase.stop
        ],
        "sources": [
            {
                "name": name,
                "target_ratio": target,
                "sequences": count,
                "tokens": count * phase.seq_len,
                "realized_ratio": round(realized, 9),
            }
            for name, target, count, realized in zip(
                names, phase.target_ratios, phase.counts, phase.realized_ratios, strict=True
            )
        ],
    }


def _shard_entry(shard: ShardSpec) -> dict:
    return {
        "path": shard.path,
        "num_sequences": shard.num_sequences,
        "sha256": shard.sha256,
        "source_ids_path": shard.source_ids_path,
        "source_ids_sha256": shard.source_ids_sha256,
    }


def build_manifest(
    out_dir: Path,
    config: dict,
    tokenizer: dict,
    schedule: Schedule,
    sources: list[SourceTokens],
    val_sequences: list[int],
    shards: list[ShardSpec],
) -> dict:
    """The manifest dict (contract A); the caller writes it last, after every data file."""
    allocations = schedule.allocations
    seq_len = allocations[0].seq_len
    total = sum(a.sequences for a in allocations)
    manifest = {
        "format": layout.FORMAT,
        "seq_len": seq_len,
        "dtype": tokenizer["dtype"],
        "vocab_size": tokenizer["vocab_size"],
        "eos_token_id": tokenizer["eos_token_id"],
        "seed": config["seed"],
        # encoder: what wrote the ids (tiktoken or tokenizers: the same ids, proved; see mix.build)
        "tokenizer": {k: tokenizer[k] for k in ("path", "fingerprint", "eos_token", "encoder")},
        "config": config,
        "sources": [
            source_entry(a, s, v) for a, s, v in zip(allocations, sources, val_sequences, strict=True)
        ],
        "phases": [phase_entry(p, [a.name for a in allocations], total, shards) for p in schedule.phases],
        "train": {
            "num_sequences": total,
            "num_tokens": total * seq_len,
            "shards": [_shard_entry(s) for s in shards],
        },
    }
    manifest["fingerprint"] = output_fingerprint(manifest, out_dir)
    return manifest
