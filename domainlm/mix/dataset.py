"""Mix directory (manifest.json + flat token shards) -> torch Datasets of sequences.

The read side of format `domainlm.mix/v1` (README "Mix output format"); the manifest itself is read
by `domainlm.mix.manifest.open_mix` (no torch), the per-sequence source ids by its
`train_source_ids` (sample i of `train_dataset` came from source `train_source_ids(dir)[i]`). Shards are flat arrays of
`seq_len`-token sequences; a sample is one slice of a `np.memmap`, so `ds[i]` costs one page-cache
read whatever the dataset size, and nothing is loaded up front.
"""

from __future__ import annotations

import bisect
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from domainlm.errors import ConfigError, DataError
from domainlm.mix.manifest import DTYPES, MixManifest, SourceIds, open_mix, train_source_ids

# train_source_ids / SourceIds live in the numpy-only manifest module; offered here beside the datasets.
__all__ = ["PackedSequences", "RankSlice", "SourceIds", "train_dataset", "train_source_ids", "val_datasets"]


class PackedSequences(Dataset):
    """`seq_len`-token sequences stored back to back in one or more flat `.bin` files.

    `ds[i]` is a `torch.LongTensor[seq_len]`. Memmaps open lazily in each process (and are dropped
    when pickled), so DataLoader workers started with spawn or fork each map the files themselves.
    """

    def __init__(self, paths: list[str | Path], seq_len: int, dtype: str | np.dtype) -> None:
        if seq_len <= 0:
            raise ConfigError(f"seq_len {seq_len}: must be a positive number of tokens")
        self.paths = [Path(p) for p in paths]
        self.seq_len = seq_len
        self.dtype = np.dtype(DTYPES.get(dtype, dtype) if isinstance(dtype, str) else dtype)
        counts = [self._count(path) for path in self.paths]
        # starts[k] = global index of the first sequence of file k; bisect finds a file in O(log files).
        self._starts = [sum(counts[:k]) for k in range(len(counts))]
        self._counts = counts
        self._length = sum(counts)
        self._maps: list[np.memmap | None] = [None] * len(self.paths)

    def _count(self, path: Path) -> int:
        if not path.is_file():
            raise DataError(f"{path}: shard file missing; the mix directory is incomplete, rebuild it")
        size = path.stat().st_size
        per_sequence = self.seq_len * self.dtype.itemsize
        if size % per_sequence:
            raise DataError(
                f"{path}: {size} bytes is not a whole number of {self.seq_len}-token {self.dtype} sequences; "
                "the shard is truncated or the seq_len/dtype is wrong"
            )
        return size // per_sequence

    def __len__(self) -> int:
        return self._length

    def _map(self, k: int) -> np.memmap:
        mapped = self._maps[k]
        if mapped is None:
            mapped = np.memmap(self.paths[k], dtype=self.dtype, mode="r")
            self._maps[k] = mapped
        return mapped

    def __getitem__(self, index: int) -> torch.Tensor:
        if index < 0:
            index += self._length
        if not 0 <= index < self._length:
            raise IndexError(f"sequence {index} out of range for {self._length} sequences")
        k = bisect.bisect_right(self._starts, index) - 1
        offset = (index - self._starts[k]) * self.seq_len
        tokens = self._map(k)[offset : offset + self.seq_len]
        return torch.from_numpy(tokens.astype(np.int64))

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_maps"] = [None] * len(self.paths)  # a memmap would pickle its whole contents
        return state


def _dataset_of(manifest: MixManifest, relative_paths: list[str]) -> PackedSequences:
    paths = [manifest.resolve(p) for p in relative_paths]
    return PackedSequences(paths, manifest.seq_len, manifest.dtype)


def _opened(mix: str | Path | MixManifest) -> MixManifest:
    """A manifest the caller already holds (and checked) is used as is, not read again."""
    return mix if isinstance(mix, MixManifest) else open_mix(mix)


def train_dataset(mix: str | Path | MixManifest) -> PackedSequences:
    """All training sequences of a mix (its dir or opened manifest), in the shuffled order the shards hold them."""
    manifest = _opened(mix)
    return _dataset_of(manifest, [shard.path for shard in manifest.train.shards])


def val_datasets(mix: str | Path | MixManifest) -> dict[str, PackedSequences]:
    """Held-out sequences per source name (a source with no held-out sequence maps to an empty dataset)."""
    manifest = _opened(mix)
    return {source.name: _dataset_of(manifest, [source.val.path]) for source in manifest.sources}


class RankSlice(Dataset):
    """One data-parallel rank's disjoint, strided view of a dataset, resumable at a global sample offset.

    Item k is global sample `(start_sample + k * world_size + rank) % len(dataset)`: ranks never
    overlap within a pass, together they leave no gap, and resuming after `n` consumed global samples
    is `start_sample=n`. `len()` is one pass per rank (len(dataset) // world_size, equal on every rank
    so no rank waits on another); indexing past it keeps going, wrapping into the next epoch.
    """

    def __init__(self, dataset: Dataset, rank: int, world_size: int, start_sample: int = 0) -> None:
        if world_size < 1:
            raise ConfigError(f"world_size {world_size}: must be >= 1")
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank}: must be in [0, {world_size}) for world_size {world_size}")
        if start_sample < 0:
            raise ConfigError(f"start_sample {start_sample}: must be >= 0 (a count of consumed samples)")
        if len(dataset) == 0:
            raise DataError("dataset is empty: nothing to slice across ranks; build a larger mix")
        self.dataset = dataset
        self.rank = rank
        self.world_size = world_size
        self.start_sample = start_sample

    def global_index(self, k: int) -> int:
        if k < 0:
            raise IndexError(f"rank-local index {k} must be >= 0")
        return (self.start_sample + k * self.world_size + self.rank) % len(self.dataset)

    def __len__(self) -> int:
        return len(self.dataset) // self.world_size

    def __getitem__(self, k: int) -> torch.Tensor:
        return self.dataset[self.global_index(k)]
