"""Mix directory + rank + position -> this rank's micro-batches of packed sequences, resumable by sample count.

Every rank reads a disjoint strided slice of the (already shuffled) training sequences (contract A's
`RankSlice`), so the order is fixed by the mix seed and the only state is one integer: the number of
global samples consumed. Resuming at `consumed_samples` yields exactly the next batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from domainlm.mix.dataset import MixManifest, PackedSequences, RankSlice, val_datasets


class TrainBatches:
    """Micro-batches `LongTensor[micro_batch_size, seq_len]` for one rank, starting after `consumed_samples`."""

    def __init__(
        self,
        dataset: PackedSequences,
        rank: int,
        world_size: int,
        micro_batch_size: int,
        consumed_samples: int,
    ) -> None:
        self.slice = RankSlice(dataset, rank, world_size, start_sample=consumed_samples)
        self.world_size = world_size
        self.micro_batch_size = micro_batch_size
        self._start = consumed_samples
        self._taken = 0  # rank-local items handed out so far

    @property
    def consumed_samples(self) -> int:
        """Global samples consumed by all ranks together (valid at optimizer-step boundaries)."""
        return self._start + self._taken * self.world_size

    def global_indices(self) -> list[int]:
        """The global sample indices of the next micro-batch (for tests and debugging)."""
        return [self.slice.global_index(self._taken + i) for i in range(self.micro_batch_size)]

    def next(self) -> torch.Tensor:
        rows = [self.slice[self._taken + i] for i in range(self.micro_batch_size)]
        self._taken += self.micro_batch_size
        return torch.stack(rows)


@dataclass(frozen=True)
class ValSet:
    """One domain's held-out sequences, this rank's share, and the bytes per token for bits per byte."""

    name: str
    dataset: PackedSequences
    indices: list[int]  # this rank's sequence indices
    num_sequences: int  # sequences evaluated over all ranks
    bytes_per_token: float  # val bytes / val tokens of the source's held-out text


def open_val_sets(
    manifest: MixManifest, rank: int, world_size: int, max_sequences: int | None
) -> list[ValSet]:
    """Per source: the first `max_sequences` held-out sequences, split round-robin across ranks.

    The count is cut to a multiple of `world_size` so every rank runs the same number of forward
    passes: under ZeRO-3 each forward is a collective, and a rank with one batch fewer would hang.
    """
    sets = []
    datasets = val_datasets(manifest)
    for source in manifest.sources:
        dataset = datasets[source.name]
        total = len(dataset) if max_sequences is None else min(len(dataset), max_sequences)
        total -= total % world_size
        if total == 0 or source.val.tokens == 0:
            continue
        indices = list(range(rank, total, world_size))
        sets.append(ValSet(source.name, dataset, indices, total, source.val.bytes / source.val.tokens))
    return sets


def val_batches(val: ValSet, micro_batch_size: int) -> list[torch.Tensor]:
    """This rank's held-out sequences in micro-batches (the last one may be smaller)."""
    num = math.ceil(len(val.indices) / micro_batch_size)
    return [
        torch.stack([val.dataset[i] for i in val.indices[b * micro_batch_size : (b + 1) * micro_batch_size]])
        for b in range(num)
    ]
