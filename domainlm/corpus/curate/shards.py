"""Sharded curation: corpus + shard k of K -> a signature file of DocRecords (texts dropped);
K signature files -> one stream in global document order for the merge.

Shard k takes the documents whose global ordinal is k mod K, so any corpus (even one file) splits
evenly, and merging the K sorted streams by ordinal restores the exact order of an unsharded run:
the decisions, and so the output, are identical. On a cluster each shard is one task (e.g. one
datatrove/Slurm array task); locally they run as processes.
"""

from __future__ import annotations

import heapq
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from domainlm.corpus.curate.config import CurateConfig
from domainlm.corpus.curate.decontaminate import ReferenceIndex
from domainlm.corpus.curate.inputs import CorpusSpec, build_readers, iter_documents
from domainlm.corpus.curate.process import DocProcessor, DocRecord, batched, mark_repeats, pool_context

_RECORDS_PER_PICKLE = 1024  # records per pickle frame: bounds memory when reading a shard back


def shard_path(work_dir: Path, shard: int) -> Path:
    return Path(work_dir) / f"signatures-{shard:05d}.pkl"


def write_shard_signatures(
    specs: list[CorpusSpec],
    config: CurateConfig,
    shard: int,
    num_shards: int,
    work_dir: Path,
    references: ReferenceIndex | None = None,
) -> list[dict[str, Any]]:
    """Compute shard `shard`'s records into its signature file; returns the readers' stats.
    `references`: the decontamination index (each cluster task can build it from the config)."""
    if references is None and config.decontaminate.references:
        references = ReferenceIndex(config.decontaminate, config.normalize)
    processor = DocProcessor(config, references)
    readers = build_readers(specs)
    mine = mark_repeats(((o, doc) for o, doc in iter_documents(readers) if o % num_shards == shard), config)
    path = shard_path(work_dir, shard)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as handle:
        for batch in batched(mine, _RECORDS_PER_PICKLE):
            records = [processor.process(ordinal, doc, repeat) for ordinal, doc, repeat in batch]
            for record in records:
                record.text = None  # re-read when writing; keeps the file to ~0.6 KB per document
            pickle.dump(records, handle, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)  # a half-written shard never looks finished
    return [reader.stats.as_dict() for reader in readers]


def read_shard_signatures(path: Path) -> Iterator[DocRecord]:
    with open(path, "rb") as handle:
        while True:
            try:
                yield from pickle.load(handle)
            except EOFError:
                return


def merged_records(paths: list[Path]) -> Iterator[DocRecord]:
    """K ordinal-sorted shard streams -> one stream in global order (memory: one frame per shard)."""
    return heapq.merge(*(read_shard_signatures(p) for p in paths), key=lambda record: record.ordinal)


def _run_shard(args: tuple) -> list[dict[str, Any]]:
    return write_shard_signatures(*args)


def run_shards(
    specs: list[CorpusSpec],
    config: CurateConfig,
    num_shards: int,
    work_dir: Path,
    workers: int,
    references: ReferenceIndex | None = None,
) -> tuple[list[Path], list[dict[str, Any]]]:
    """Run every shard (up to `workers` at a time); returns the signature files and shard 0's read stats."""
    jobs = [(specs, config, shard, num_shards, work_dir, references) for shard in range(num_shards)]
    if workers <= 1:
        stats = [_run_shard(job) for job in jobs]
    else:
        with pool_context().Pool(min(workers, num_shards)) as pool:
            stats = pool.map(_run_shard, jobs, chunksize=1)
    return [shard_path(work_dir, shard) for shard in range(num_shards)], stats[0]
