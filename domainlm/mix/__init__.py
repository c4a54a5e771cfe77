"""Stage 3: corpora + token ratios -> packed, shuffled token shards + manifest (format domainlm.mix/v1)."""

from domainlm.mix.dataset import (
    MixManifest,
    PackedSequences,
    RankSlice,
    open_mix,
    train_dataset,
    val_datasets,
)

__all__ = ["MixManifest", "PackedSequences", "RankSlice", "open_mix", "train_dataset", "val_datasets"]
