"""Stage 3: corpora + token ratios -> packed, shuffled token shards + manifest (format domainlm.mix/v1).

Read API: `domainlm.mix.manifest` (open_mix, MixManifest, train_source_ids; numpy only) and `domainlm.mix.dataset`
(PackedSequences, RankSlice, train_dataset, val_datasets; imports torch). Both load on first use so
`domainlm mix` starts fast.
"""

from typing import Any

_MANIFEST_API = ("MixManifest", "SourceIds", "open_mix", "train_source_ids")
_DATASET_API = ("PackedSequences", "RankSlice", "train_dataset", "val_datasets")
__all__ = [*_MANIFEST_API, *_DATASET_API]


def __getattr__(name: str) -> Any:
    if name in _MANIFEST_API:
        from domainlm.mix import manifest

        return getattr(manifest, name)
    if name in _DATASET_API:
        from domainlm.mix import dataset

        return getattr(dataset, name)
    raise AttributeError(f"module 'domainlm.mix' has no attribute {name!r}")
