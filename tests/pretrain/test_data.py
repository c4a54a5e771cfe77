"""Rank slicing: disjoint, complete, ordered by the mix seed, and resumable at a sample count."""

from __future__ import annotations

import torch

from domainlm.mix.dataset import train_dataset
from domainlm.pretrain.data import TrainBatches


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
