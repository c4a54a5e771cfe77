"""Stage 3: corpora + token ratios -> packed, shuffled token shards + manifest (format domainlm.mix/v1).

The read API (open_mix, PackedSequences, RankSlice, train_dataset, val_datasets) lives in
`domainlm.mix.dataset` and imports torch; it is loaded on first use so `domainlm mix` starts fast.
"""

from typing import Any

_READ_API = ("MixManifest", "PackedSequences", "RankSlice", "open_mix", "train_dataset", "val_datasets")
__all__ = list(_READ_API)


def __getattr__(name: str) -> Any:
    if name in _READ_API:
        from domainlm.mix import dataset

        return getattr(dataset, name)
    raise AttributeError(f"module 'domainlm.mix' has no attribute {name!r}")
