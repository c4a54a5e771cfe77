"""Mix directory -> Megatron-LM / NeMo / GPT-NeoX indexed datasets (`.bin` + `.idx`) + data-args files.

Each of the mix's packed sequences becomes one Megatron document of `seq_len` tokens. The `.bin`
is the domainlm file itself: a hard link, so no token is copied (a copy only where the output lies
on another filesystem or links are refused). A hard link is safe here because domainlm never writes
a shard in place: a rebuilt mix gets new files, and the export keeps the bytes its `.idx` describes.
Only the `.idx` is new, 20 bytes per sequence.

The `.idx` layout is Megatron's MMIDIDX (megatron/core/datasets/indexed_dataset.py, `_IndexWriter`
and `_IndexReader`; GPT-NeoX's `MMapIndexedDataset.Index` reads the same bytes), little-endian:
    b"MMIDIDX\\x00\\x00"  <Q version 1  <B dtype code  <Q sequence count N  <Q document count N + 1
    int32[N] sequence lengths (tokens)  int64[N] sequence pointers (byte offsets into the .bin)
    int64[N + 1] document indices (0, 1, ..., N: sequence i is document i)

A phased mix (a mixture schedule) cannot be one Megatron blend: Megatron interleaves and shuffles
the train prefixes, so the anneal's sequences would be spread over the whole run. Its export also
has one data-args file pair per phase, naming only that phase's shards; it is trained phase by
phase, one Megatron run per phase, each continuing from the previous run's checkpoint.
"""

from __future__ import annotations

import errno
import os
import shutil
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from domainlm.errors import ConfigError, DataError
from domainlm.mix.manifest import MixManifest, open_mix
from domainlm.outputs import atomic_output_dir, to_json

FORMAT = "domainlm.megatron/v1"
COMMAND = "export megatron"
IDX_HEADER = b"MMIDIDX\x00\x00"
IDX_VERSION = 1
# Megatron's `DType` enum (indexed_dataset.py). It has no uint32: see megatron_dtype.
DTYPE_CODES = {
    "uint8": 1,
    "int8": 2,
    "int16": 3,
    "int32": 4,
    "int64": 5,
    "float64": 6,
    "float32": 7,
    "uint16": 8,
}
DATA_ARGS_NAME = "data_args.txt"  # Megatron-LM flags: `pretrain_gpt.py ... $(cat data_args.txt)`
PER_SPLIT_NAME = "per_split_data_args.json"  # Megatron-LM `--per-split-data-args-path`
PHASE_DATA_ARGS = "data_args.{}.txt"  # a phased mix: one per phase, in training order
PHASE_PER_SPLIT = "per_split_data_args.{}.json"
EXPORT_NAME = "export.json"  # what was exported, from which mix, and NeMo's `paths` dict
_INDEX_BLOCK = 1 << 20  # sequences per block written into an .idx: at most 20 MiB of arrays in RAM
_NO_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP}


def megatron_dtype(mix_dtype: str, vocab_size: int) -> str:
    """The token dtype the `.idx` names for a mix's dtype.

    uint16 is in Megatron's enum. uint32 is not; token ids below 2**31 have the same little-endian
    bytes as int32, so the `.idx` says int32 and the shard is used as it is (int32 is also what
    Megatron's own preprocess_data.py writes for vocabularies over 65,500).
    """
    if mix_dtype == "uint16":
        return "uint16"
    if mix_dtype == "uint32" and vocab_size <= 2**31:
        return "int32"
    raise DataError(
        f"mix dtype {mix_dtype} with vocab_size {vocab_size}: Megatron's indexed dataset has no dtype "
        "for these ids (uint16, or int32 for ids below 2**31); export a mix with a smaller vocabulary"
    )


def _blocks(count: int) -> Iterator[np.ndarray]:
    for start in range(0, count, _INDEX_BLOCK):
        yield np.arange(start, min(start + _INDEX_BLOCK, count), dtype=np.int64)


def write_idx(path: Path, num_sequences: int, seq_len: int, dtype: str) -> None:
    """Write the MMIDIDX index of `num_sequences` back-to-back sequences of `seq_len` `dtype` tokens."""
    code = DTYPE_CODES[dtype]  # KeyError is a bug: megatron_dtype chose the name
    seq_bytes = seq_len * np.dtype(dtype).itemsize
    with open(path, "wb") as handle:
        handle.write(IDX_HEADER)
        handle.write(struct.pack("<Q", IDX_VERSION))
        handle.write(struct.pack("<B", code))
        handle.write(struct.pack("<Q", num_sequences))
        handle.write(struct.pack("<Q", num_sequences + 1))
        for ids in _blocks(num_sequences):
            handle.write(np.full(len(ids), seq_len, dtype="<i4").tobytes())
        for ids in _blocks(num_sequences):
            handle.write((ids * seq_bytes).astype("<i8").tobytes())
        for ids in _blocks(num_sequences + 1):
            handle.write(ids.astype("<i8").tobytes())


def link_or_copy(source: Path, target: Path) -> bool:
    """Hard-link `target` to `source` (True); copy it where links are impossible (False)."""
    try:
        os.link(source, target)
        return True
    except OSError as exc:
        if exc.errno not in _NO_LINK:  # other filesystem, protected_hardlinks, link limit, no links
            raise
    shutil.copyfile(source, target)
    return False


@dataclass(frozen=True)
class Prefix:
    """One exported indexed dataset: `<out>/<name>.bin` + `<out>/<name>.idx`."""

    name: str  # relative to the export directory, without suffix: train/shard_00000, val/finance
    sequences: int
    linked: bool  # the .bin is a hard link to the mix's file (False: a copy)
    source: str | None = None  # the mix source of a validation prefix


@dataclass(frozen=True)
class PhaseExport:
    """One phase of a phased mix: global sequences [start, stop), held by the train prefixes `train`."""

    name: str
    start: int
    stop: int
    train: list[Prefix]

    @property
    def data_args_name(self) -> str:
        return PHASE_DATA_ARGS.format(self.name)

    @property
    def per_split_name(self) -> str:
        return PHASE_PER_SPLIT.format(self.name)


@dataclass(frozen=True)
class MegatronExport:
    out: Path  # absolute: the data-args files name absolute prefixes under it
    manifest: MixManifest
    dtype: str  # the token dtype the .idx files name
    train: list[Prefix]
    valid: list[Prefix]  # one per source with at least one held-out sequence
    skipped_valid: list[str]  # sources with no held-out sequence (an empty .bin cannot be mapped)
    phases: list[PhaseExport]  # a phased mix's phases in training order; empty for a single-phase mix

    def token_data(self) -> str:
        """How the .bin files got there, for the summary: hard links, copies, or both."""
        linked = {p.linked for p in self.train + self.valid}
        return {frozenset({True}): "hard links", frozenset({False}): "copies"}.get(
            frozenset(linked), "hard links and copies"
        )

    def prefix(self, item: Prefix) -> str:
        return str(self.out / item.name)

    def train_blend(self, train: list[Prefix] | None = None) -> list:
        """[weight, prefix, ...] of `train` (default: all): weights are sequence counts, so the blend
        keeps the mix's ratios."""
        prefixes = self.train if train is None else train
        return [x for p in prefixes for x in (p.sequences, self.prefix(p))]

    def valid_blend(self) -> list[str] | None:
        """Prefixes only (--multiple-validation-sets and NeMo's full validation want no weights); None if none."""
        return [self.prefix(p) for p in self.valid] or None

    def summary(self) -> dict:
        """export.json and the CLI's --json document."""
        m = self.manifest
        return {
            "format": FORMAT,
            "out": str(self.out),
            "mix": str(m.root.resolve()) if m.root else None,
            "mix_fingerprint": m.fingerprint,
            "seq_len": m.seq_len,
            "dtype": self.dtype,
            "mix_dtype": m.dtype,
            "vocab_size": m.vocab_size,
            "eos_token_id": m.eos_token_id,
            "token_data": self.token_data(),
            "train": [{"prefix": p.name, "sequences": p.sequences, "linked": p.linked} for p in self.train],
            "valid": [
                {"source": p.source, "prefix": p.name, "sequences": p.sequences, "linked": p.linked}
                for p in self.valid
            ],
            "skipped_valid": self.skipped_valid,
            "data_args": DATA_ARGS_NAME,
            "per_split_data_args": PER_SPLIT_NAME,
            # NeMo 2 PreTrainingDataModule(paths=...): it needs all three keys; the held-out set is also the test set.
            "nemo_paths": {
                "train": self.train_blend(),
                "validation": self.valid_blend(),
                "test": self.valid_blend(),
            },
        } | ({"phases": [self._phase_summary(phase) for phase in self.phases]} if self.phases else {})

    def _phase_summary(self, phase: PhaseExport) -> dict:
        return {
            "name": phase.name,
            "start": phase.start,
            "stop": phase.stop,
            "sequences": phase.stop - phase.start,
            "train": [p.name for p in phase.train],
            "data_args": phase.data_args_name,
            "per_split_data_args": phase.per_split_name,
            "nemo_paths": {"train": self.train_blend(phase.train), "validation": self.valid_blend(),
                           "test": self.valid_blend()},
        }  # fmt: skip

    def data_args(self, train: list[Prefix] | None = None) -> str:
        """Megatron-LM flags, one per line; whitespace-separated, as Megatron reads its args files.

        `train`: one phase's prefixes (default: all); every phase is validated on the same held-out sets.
        """
        lines = ["--train-data-path " + " ".join(map(str, self.train_blend(train)))]
        if self.valid:
            lines.append("--valid-data-path " + " ".join(self.valid_blend() or []))
        return "\n".join(lines) + "\n"

    def per_split(self, train: list[Prefix] | None = None) -> dict:
        return {"train": self.train_blend(train), "valid": self.valid_blend(), "test": self.valid_blend()}


def _checked_file(manifest: MixManifest, relative: str, sequences: int, what: str) -> Path:
    """The mix file at `relative`, after checking it holds exactly `sequences` whole sequences."""
    path = manifest.resolve(relative)
    expected = sequences * manifest.seq_len * np.dtype(manifest.dtype).itemsize
    if not path.is_file():
        raise DataError(f"{path}: {what} is missing; the mix directory is incomplete, rebuild it")
    size = path.stat().st_size
    if size != expected:
        raise DataError(
            f"{path}: {what} has {size} bytes, the manifest says {sequences} x {manifest.seq_len} "
            f"{manifest.dtype} tokens = {expected}; the mix was changed after it was built, rebuild it"
        )
    return path


def _plan(manifest: MixManifest) -> tuple[list[tuple[str, Path, int, str | None]], list[str]]:
    """(prefix name, mix file, sequences, source) per file to export; sources with no held-out data."""
    files: list[tuple[str, Path, int, str | None]] = []
    for shard in manifest.train.shards:
        path = _checked_file(manifest, shard.path, shard.num_sequences, "shard")
        files.append((shard.path.removesuffix(".bin"), path, shard.num_sequences, None))
    skipped = []
    for source in manifest.sources:
        if source.val.sequences == 0:
            skipped.append(source.name)
            continue
        what = f"held-out tokens of source {source.name!r}"
        path = _checked_file(manifest, source.val.path, source.val.sequences, what)
        files.append((source.val.path.removesuffix(".bin"), path, source.val.sequences, source.name))
    return files, skipped


def _phases(manifest: MixManifest, train: list[Prefix]) -> list[PhaseExport]:
    """Each phase with the train prefixes of its shards; none for a single-phase mix (one blend is right)."""
    if len(manifest.phases) < 2:
        return []
    by_shard = {f"{p.name}.bin": p for p in train}
    return [
        PhaseExport(phase.name, phase.start, phase.stop, [by_shard[path] for path in phase.shards])
        for phase in manifest.phases
    ]


def _check_out(out: Path) -> None:
    # Megatron-LM and NeMo split the data args on whitespace: a prefix with a space would break apart.
    if any(ch.isspace() for ch in str(out)):
        raise ConfigError(
            f"--out {str(out)!r}: contains whitespace, which Megatron's data-args readers split on; "
            "choose a path without spaces"
        )


def export_megatron(mix_dir: str | Path, out: str | Path, *, overwrite: bool = False) -> MegatronExport:
    """Write the indexed datasets of `mix_dir` into `out` (atomically) and return what was written."""
    mix_dir = Path(mix_dir)
    manifest = open_mix(mix_dir)
    out = Path(os.path.abspath(out))
    _check_out(out)
    dtype = megatron_dtype(manifest.dtype, manifest.vocab_size)
    files, skipped = _plan(manifest)
    train, valid = [], []
    with atomic_output_dir(out, overwrite, command=COMMAND, inputs=[mix_dir]) as tmp:
        for name, path, sequences, source in files:
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            linked = link_or_copy(path, tmp / f"{name}.bin")
            write_idx(tmp / f"{name}.idx", sequences, manifest.seq_len, dtype)
            (valid if source else train).append(Prefix(name, sequences, linked, source))
        result = MegatronExport(out, manifest, dtype, train, valid, skipped, _phases(manifest, train))
        # Inside the temp dir: the whole directory appears at once, so plain writes suffice.
        (tmp / DATA_ARGS_NAME).write_text(result.data_args(), encoding="utf-8")
        (tmp / PER_SPLIT_NAME).write_text(to_json(result.per_split()), encoding="utf-8")
        for phase in result.phases:
            (tmp / phase.data_args_name).write_text(result.data_args(phase.train), encoding="utf-8")
            (tmp / phase.per_split_name).write_text(to_json(result.per_split(phase.train)), encoding="utf-8")
        (tmp / EXPORT_NAME).write_text(to_json(result.summary()), encoding="utf-8")
    return result
