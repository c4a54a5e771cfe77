"""A mix directory -> its typed manifest (format `domainlm.mix/v1`): the ONE reader of `manifest.json`.

Plan, pretrain, eval and the demo all read a mix through `open_mix`. numpy and pydantic only: no
torch import, so `domainlm plan --mix` and `domainlm eval` start fast (tests/mix/test_manifest.py
checks this). The torch Datasets over the shards live in `domainlm.mix.dataset`.
"""

from __future__ import annotations

import bisect
import json
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from domainlm.errors import ConfigError, DataError
from domainlm.mix.layout import DTYPES as DTYPE_NAMES
from domainlm.mix.layout import FORMAT, MANIFEST_NAME

__all__ = [
    "FORMAT",
    "MANIFEST_NAME",
    "MixManifest",
    "SourceIds",
    "is_mix_dir",
    "open_mix",
    "train_source_ids",
]

DTYPES = {name: np.dtype(name) for name in DTYPE_NAMES}


class _ManifestModel(BaseModel):
    # Readers ignore keys they do not know, so a newer writer's extra fields do not break them.
    model_config = ConfigDict(extra="ignore", frozen=True)


class ShardInfo(_ManifestModel):
    path: str  # relative to the mix directory
    num_sequences: int
    sha256: str
    source_ids_path: str | None = None  # one uint8 source index per sequence (None: an older mix)
    source_ids_sha256: str | None = None


class TrainInfo(_ManifestModel):
    num_sequences: int
    num_tokens: int
    shards: list[ShardInfo]


class ValInfo(_ManifestModel):
    documents: int
    tokens: int  # all held-out tokens (EOS included), before packing into whole sequences
    bytes: int  # UTF-8 bytes of the held-out text, the denominator of bits per byte
    sequences: int
    path: str  # packed tokens, relative to the mix directory
    text_path: str  # raw held-out text (jsonl.gz), relative to the mix directory


class SourceInfo(_ManifestModel):
    name: str
    paths: list[str]
    fingerprint: str
    documents: int  # training documents (held-out ones excluded)
    available_tokens: int  # training tokens incl. one EOS per document
    target_ratio: float
    tokens_taken: int
    repeats: float  # epochs over this source's training tokens
    realized_ratio: float
    val: ValInfo


class PhaseSourceInfo(_ManifestModel):
    name: str
    target_ratio: float  # 0: the source sits this phase out
    sequences: int
    tokens: int
    realized_ratio: float  # sequences / the phase's sequences


class PhaseInfo(_ManifestModel):
    """One phase of the mixture schedule: global sequences [start, stop) in shard order."""

    index: int
    name: str
    start: int
    stop: int
    num_sequences: int
    num_tokens: int
    target_share: float
    realized_share: float
    shards: list[str]  # paths of the shards that hold it (a shard never straddles two phases)
    sources: list[PhaseSourceInfo]  # in the order of the manifest's sources


class TokenizerInfo(_ManifestModel):
    path: str
    fingerprint: (
        str  # domainlm.tokenizer.load.LoadedTokenizer.fingerprint of the tokenizer that wrote the ids
    )
    eos_token: str | None = None  # the EOS the mix put after each document (older mixes: see MixManifest)
    encoder: str | None = None  # what wrote the ids: "tiktoken", "tokenizers" (older mixes: None)


class MixManifest(_ManifestModel):
    format: str
    seq_len: int
    dtype: str
    vocab_size: int
    eos_token_id: int
    seed: int
    tokenizer: TokenizerInfo
    config: dict
    sources: list[SourceInfo]
    train: TrainInfo
    phases: list[PhaseInfo] = []  # in training order; empty only in mixes built before phases
    fingerprint: str
    root: Path | None = None  # the mix directory it was read from (not stored in the file)

    @property
    def path(self) -> Path:
        """The manifest file, for messages that say where a value came from."""
        return (self.root or Path(".")) / MANIFEST_NAME

    @property
    def eos_token(self) -> str | None:
        """The EOS token string the mix was built with (recorded in `tokenizer`, else in `config`)."""
        return self.tokenizer.eos_token or self.config.get("eos_token")

    def resolve(self, relative: str) -> Path:
        if self.root is None:
            raise ConfigError("mix manifest was not read with open_mix; its files have no directory")
        return self.root / relative

    def source(self, name: str) -> SourceInfo:
        for source in self.sources:
            if source.name == name:
                return source
        names = ", ".join(s.name for s in self.sources)
        raise ConfigError(f"mix {self.root}: no source {name!r} (sources: {names})")

    def phase_of(self, index: int) -> PhaseInfo:
        """The phase that holds global training sequence `index` (its position in shard order)."""
        if not self.phases:
            raise DataError(f"{self.path}: records no phases (an older mix); rebuild it with `domainlm mix`")
        if not 0 <= index < self.train.num_sequences:
            raise IndexError(f"sequence {index} out of range for {self.train.num_sequences} sequences")
        return self.phases[bisect.bisect_right([p.start for p in self.phases], index) - 1]

    def val_text_paths(self) -> list[tuple[str, Path]]:
        """(source name, held-out raw text) per source, in manifest order; a missing file is a DataError."""
        pairs = []
        for source in self.sources:
            path = self.resolve(source.val.text_path)
            if not path.is_file():
                raise DataError(
                    f"{path}: held-out text of source {source.name!r} is missing; rebuild the mix"
                )
            pairs.append((source.name, path))
        return pairs


def held_out_texts(mix_dir: str | Path, *, named: str | None = None) -> list[tuple[str, Path]]:
    """A mix dir -> (source name, its held-out raw text) per source, in manifest order.

    The one expansion of a mix into its held-out sets: `eval --data MIX` and `vocab report --corpus MIX`
    both use it, so both measure the same documents under the same names. `named`: the flag value
    when the user gave NAME=MIX, refused (a mix is several sets, named by its sources).
    """
    if named is not None:
        raise ConfigError(f"{named}: {mix_dir} is a mix directory; pass it without NAME= to get its sources")
    return open_mix(mix_dir).val_text_paths()


def is_mix_dir(path: str | Path) -> bool:
    """A directory holding a manifest.json (whether it is a valid mix is open_mix's to say)."""
    path = Path(path)
    return path.is_dir() and (path / MANIFEST_NAME).is_file()


def open_mix(mix_dir: str | Path) -> MixManifest:
    """Read and validate `mix_dir/manifest.json`; one-line DataError if missing or not a domainlm mix."""
    root = Path(mix_dir)
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise DataError(
            f"{root}: no {MANIFEST_NAME}; not a mix directory (point at a `domainlm mix` output directory)"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: unreadable manifest ({exc}); rebuild the mix") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else None
        raise DataError(f"{path}: format {found!r} is not {FORMAT!r}; rebuild the mix with `domainlm mix`")
    try:
        manifest = MixManifest.model_validate({**data, "root": root})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise DataError(f"{path}: {where}: {first['msg']}; rebuild the mix with `domainlm mix`") from None
    if manifest.dtype not in DTYPES:
        raise DataError(f"{path}: dtype {manifest.dtype!r} is not one of {sorted(DTYPES)}; rebuild the mix")
    return manifest


class SourceIds:
    """The source of every training sequence in global (shard) order: `ids[i]` is an index into
    `manifest.sources`; `ids[array or slice]` gives a uint8 array. Reads the shards'
    `.source_ids` files through memmaps opened on first use (dropped when pickled); nothing is
    loaded up front. `RankSlice(ids, rank, world_size, start)` lines them up with a rank's samples.
    """

    def __init__(self, manifest: MixManifest) -> None:
        self.manifest = manifest
        self.paths, counts = [], []
        for shard in manifest.train.shards:
            if shard.source_ids_path is None:
                raise DataError(
                    f"{manifest.path}: shard {shard.path} has no source ids (built before domainlm wrote them); "
                    "rebuild the mix with `domainlm mix`"
                )
            path = manifest.resolve(shard.source_ids_path)
            size = path.stat().st_size if path.is_file() else None
            if size != shard.num_sequences:
                found = "is missing" if size is None else f"has {size} bytes"
                raise DataError(
                    f"{path}: {found}, the manifest says {shard.num_sequences} sequences (one byte each); "
                    "the mix is incomplete or was changed, rebuild it"
                )
            self.paths.append(path)
            counts.append(shard.num_sequences)
        self.starts = np.cumsum([0, *counts])
        self._maps: list[np.memmap | None] = [None] * len(self.paths)

    def __len__(self) -> int:
        return int(self.starts[-1])

    def _map(self, k: int) -> np.memmap:
        if self._maps[k] is None:
            self._maps[k] = np.memmap(self.paths[k], dtype=np.uint8, mode="r")
        return self._maps[k]

    def __getitem__(self, index: int | slice | np.ndarray) -> int | np.ndarray:
        if isinstance(index, slice):
            return self[np.arange(*index.indices(len(self)), dtype=np.int64)]
        if np.ndim(index) == 0:
            return int(self[np.asarray([index], dtype=np.int64)][0])
        ids = np.asarray(index, dtype=np.int64)
        ids = np.where(ids < 0, ids + len(self), ids)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self)):
            raise IndexError(f"sequence index out of range for {len(self)} sequences")
        shard = np.searchsorted(self.starts, ids, side="right") - 1
        out = np.empty(ids.shape, dtype=np.uint8)
        for k in np.unique(shard).tolist():
            mask = shard == k
            out[mask] = self._map(k)[ids[mask] - self.starts[k]]
        return out

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_maps": [None] * len(self.paths)}


def train_source_ids(mix_dir: str | Path) -> SourceIds:
    """Per training sequence, the index of its source in the manifest's `sources`, in global order."""
    return SourceIds(open_mix(mix_dir))
