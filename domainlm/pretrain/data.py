"""Mix directory + rank + position -> this rank's micro-batches of packed sequences, resumable by sample count;
and each source's held-out rows, split over any number of ranks without dropping one.

Every rank reads a disjoint strided slice of the (already shuffled) training sequences (contract A's
`RankSlice`), so the order is fixed by the mix seed and the only state is one integer: the number of
global samples consumed. Resuming at `consumed_samples` yields exactly the next batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from domainlm.corpus import CorpusReader
from domainlm.losses import IGNORE_INDEX, causal_windows, prefix_token_id
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


def epochs_warning(total_samples: int, manifest: MixManifest, how: str) -> str | None:
    """One line when training reads the mix's sequences more than once (RankSlice wraps around)."""
    available = manifest.train.num_sequences
    if total_samples <= available:
        return None
    return (
        f"{how} trains {total_samples:,} sequences, {total_samples / available:.2f} epochs over the mix's "
        f"{available:,} ({manifest.path.parent}): its sequences repeat in the same order from epoch 2; "
        "build a larger mix (its total_tokens) or train fewer steps"
    )


@dataclass(frozen=True)
class ValRow:
    """One held-out model input: `ids`, of which the last `num_scored` are causal targets (0: the
    objective decides what is scored, as for masked and span-corruption models)."""

    ids: np.ndarray
    num_scored: int = 0


@dataclass(frozen=True)
class ValSet:
    """One source's held-out rows (all ranks' together) and the UTF-8 bytes they cover."""

    name: str
    rows: list[ValRow]
    num_documents: int  # whole held-out documents scored (causal); 0 for packed sequences
    num_bytes: int | None  # their exact UTF-8 bytes, the bits-per-byte denominator; None: not per byte

    def rank_rows(self, rank: int, world_size: int) -> list[ValRow]:
        """This rank's rows: strided, so the ranks together cover every row once, whatever `world_size`."""
        return self.rows[rank::world_size]


def num_val_forwards(num_rows: int, world_size: int, micro_batch_size: int) -> int:
    """Forward passes every rank runs for a set: the busiest rank's. Under ZeRO-3 each forward is a
    collective, so a rank with fewer rows runs padding batches that score nothing (never a hang)."""
    return math.ceil(math.ceil(num_rows / world_size) / micro_batch_size)


def causal_val_sets(
    manifest: MixManifest,
    tokenizer: Any,
    seq_len: int,
    max_sequences: int | None,
) -> list[ValSet]:
    """Per source: its held-out text as `domainlm eval` scores it (whole documents, each after the
    BOS/EOS prefix, in windows of seq_len tokens with stride seq_len // 2), and its exact bytes.

    Documents are taken in file order until the next one would pass `max_sequences` windows (at
    least one document), so `domainlm eval --max-docs <num_documents> --max-length <seq_len>` scores
    the same targets.
    """
    prefix = prefix_token_id(tokenizer)
    stride = max(1, seq_len // 2)
    sets = []
    for name, path in manifest.val_text_paths():
        texts = [document.text for document in CorpusReader(path, source=name)]
        rows: list[ValRow] = []
        num_documents = num_bytes = 0
        for text, ids in zip(texts, _encode(tokenizer, texts), strict=True):
            if prefix is not None:
                ids = np.concatenate([np.asarray([prefix], dtype=np.int64), ids])
            windows = causal_windows(len(ids), seq_len, stride)
            if max_sequences is not None and num_documents and len(rows) + len(windows) > max_sequences:
                break
            rows += [ValRow(ids[w.start : w.end], w.num_scored) for w in windows]
            num_documents += 1
            num_bytes += len(text.encode("utf-8"))
        if rows:
            sets.append(ValSet(name, rows, num_documents, num_bytes))
    return sets


def _encode(tokenizer: Any, texts: list[str]) -> list[np.ndarray]:
    """Token ids without special tokens, exactly as `domainlm eval` calls the tokenizer."""
    if not texts:
        return []
    encoded = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
    return [np.asarray(ids, dtype=np.int64) for ids in encoded]


def packed_val_sets(manifest: MixManifest, max_sequences: int | None) -> list[ValSet]:
    """Per source: the first `max_sequences` packed held-out sequences (masked and span-corruption
    objectives, whose loss is not a per-byte code length)."""
    sets = []
    datasets = val_datasets(manifest)
    for source in manifest.sources:
        dataset = datasets[source.name]
        total = len(dataset) if max_sequences is None else min(len(dataset), max_sequences)
        if total:
            rows = [ValRow(dataset[i].numpy()) for i in range(total)]
            sets.append(ValSet(source.name, rows, 0, None))
    return sets


def rank_batches(
    val: ValSet, rank: int, world_size: int, micro_batch_size: int
) -> list[tuple[list[ValRow], bool]]:
    """This rank's `num_val_forwards` micro-batches as (rows, scored). Past its own rows come padding
    batches (the set's first row, `scored` False) so every rank runs the same number of forwards."""
    mine = val.rank_rows(rank, world_size)
    batches = []
    for index in range(num_val_forwards(len(val.rows), world_size, micro_batch_size)):
        chunk = mine[index * micro_batch_size : (index + 1) * micro_batch_size]
        batches.append((chunk, True) if chunk else (val.rows[:1], False))
    return batches


def causal_batch(
    rows: list[ValRow], pad_id: int, scored: bool = True
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Right-padded inputs + attention mask, and labels aligned with the logits (label t is the target
    of logit t): each row's last `num_scored` tokens, -100 elsewhere (everywhere when not `scored`)."""
    width = max(len(row.ids) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    for i, row in enumerate(rows):
        n, first = len(row.ids), len(row.ids) - row.num_scored
        ids[i, :n] = torch.from_numpy(row.ids)
        mask[i, :n] = 1
        if scored:
            labels[i, first - 1 : n - 1] = torch.from_numpy(row.ids[first:])
    return {"input_ids": ids, "attention_mask": mask}, labels


def packed_batch(rows: list[ValRow]) -> torch.Tensor:
    """Packed held-out sequences as one [B, seq_len] batch for the objective."""
    return torch.stack([torch.from_numpy(row.ids) for row in rows])
