"""Rank slicing: disjoint, complete, ordered by the mix seed, and resumable at a sample count."""

from __future__ import annotations

import torch

from domainlm.mix.dataset import open_mix, train_dataset
from domainlm.pretrain.data import TrainBatches, open_val_sets, val_batches


def test_ranks_read_disjoint_data_that_covers_each_step(tiny_data):
    dataset = train_dataset(tiny_data[1])
    ranks = [TrainBatches(dataset, r, 2, micro_batch_size=2, consumed_samples=0) for r in range(2)]
    seen = []
    for _ in range(2):  # one optimizer step with 2 accumulation micro-batches
        for batches in ranks:
            indices = batches.global_indices()
            batch = batches.next()
            assert torch.equal(batch, torch.stack([dataset[i] for i in indices]))
            seen += indices
    assert sorted(seen) == list(range(8))  # disjoint and gap-free: exactly the first global batch
    assert [b.consumed_samples for b in ranks] == [8, 8]


def test_resume_at_consumed_samples_gives_the_exact_next_batch(tiny_data):
    dataset = train_dataset(tiny_data[1])
    straight = TrainBatches(dataset, 1, 2, 2, 0)
    for _ in range(3):
        straight.next()
    resumed = TrainBatches(dataset, 1, 2, 2, consumed_samples=straight.consumed_samples)
    assert resumed.global_indices() == straight.global_indices() == [13, 15]
    assert torch.equal(resumed.next(), straight.next())


def test_val_sets_split_evenly_across_ranks(tiny_data):
    manifest = open_mix(tiny_data[1])
    per_rank = [open_val_sets(manifest, r, 2, max_sequences=7) for r in range(2)]
    for rank0, rank1 in zip(*per_rank, strict=True):
        assert rank0.num_sequences == 6  # 7 cut to a multiple of 2 ranks: equal forward passes
        assert set(rank0.indices).isdisjoint(rank1.indices) and len(rank0.indices) == len(rank1.indices) == 3
        source = manifest.source(rank0.name)
        assert rank0.bytes_per_token == source.val.bytes / source.val.tokens
        assert [b.shape[0] for b in val_batches(rank0, 2)] == [2, 1]
