"""`curate --executor ray`: the local pipeline's work as Ray tasks, with the same output byte for byte.

Three kinds of task, then the local merge code:
1. one map task per input file: DocProcessor over its documents (normalize, rules, MinHash,
   redaction, decontamination) -> its DocRecords, plus its digests split into P hash partitions
   and its signatures' LSH band keys split into Q band partitions (Arrow IPC, never pickle);
2. P exact-dedup tasks, one per digest partition: ExactIndex over the partition in document order
   -> (document, first document with the same text) for every exact duplicate;
3. Q near-dedup tasks, one per group of LSH bands: documents sharing a band bucket are candidates,
   verified on the full signature (estimated Jaccard >= threshold) -> verified pairs (later, earlier).
The driver then replays the records in document order through DedupMerger, whose exact and near
indexes are replaced by the partition answers: a near-duplicate points at the earliest *kept*
document it matches, which is what NearIndex decides locally, so clusters resolve to the same kept
document. Paragraph dedup, the report and the writers are the local ones, run in the driver.

Document order: file k's i-th document has key k * 2^32 + i, which sorts like the global ordinal
without knowing how many documents earlier files hold; the driver renumbers as it replays.
Memory in the driver: one entry per exact duplicate and per verified pair, plus one file's records.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pyarrow as pa
from datasketch import MinHashLSH
from rich.progress import Progress

from domainlm.corpus.curate.config import CurateConfig
from domainlm.corpus.curate.decontaminate import ReferenceIndex
from domainlm.corpus.curate.dedup_exact import ExactIndex
from domainlm.corpus.curate.dedup_near import band_key
from domainlm.corpus.curate.merge import DedupMerger
from domainlm.corpus.curate.process import EMPTY_RULE, DocProcessor, DocRecord, mark_repeats
from domainlm.corpus.curate.ray_records import from_ipc, iter_records, records_table, signature_of, to_ipc
from domainlm.corpus.curate.report import CurationStats
from domainlm.corpus.readers import CorpusReader
from domainlm.executors.ray_cluster import cluster_cpus, get
from domainlm.storage import set_storage_options, storage_options

_FILE_BITS = 32  # documents per file < 2^32
_MAX_PARTITIONS = 64
_EXACT = pa.schema([("ordinal", pa.int64()), ("digest", pa.binary()), ("doc_id", pa.string())])
_DUPLICATES = pa.schema([("ordinal", pa.int64()), ("duplicate_of", pa.string())])
_BANDS = pa.schema(
    [
        ("ordinal", pa.int64()),
        ("doc_id", pa.string()),
        ("signature", pa.binary()),
        ("keys", pa.list_(pa.binary())),
    ]
)
_PAIRS = pa.schema(
    [("ordinal", pa.int64()), ("earlier", pa.int64()), ("earlier_id", pa.string()), ("jaccard", pa.float64())]
)
# The last run's dedup shuffle volume, tasks and partitions (benchmarks/bench_scale.py reads it;
# kept out of report.json, which must equal the local run's).
last_run: dict[str, int] = {}
RETRIES = 3  # a task whose worker dies (node lost, OOM-killed) runs again; a task that raises does not


def _band_hasher(config: CurateConfig) -> MinHashLSH:
    """datasketch's own band keys (the index NearIndex builds), so buckets are exactly the local ones."""
    near = config.near_dedup
    return MinHashLSH(num_perm=near.num_perm, params=(near.bands, near.rows), hashfunc=band_key)


def map_file(
    job: dict[str, Any],
    config_json: dict[str, Any],
    references: ReferenceIndex | None,
    parts: int,
    band_parts: int,
    storage: dict[str, Any],
) -> list[Any]:
    """One input file -> [records, read stats, P exact blocks, Q band blocks]."""
    if storage:
        set_storage_options(storage)
    config = CurateConfig.model_validate(config_json)
    processor = DocProcessor(config, references)
    # The name the driver's reader gives this file (ids are relative to the corpus path given).
    reader = CorpusReader(job["path"], job["source"], job["text_field"], names=[job["name"]])
    base = job["index"] << _FILE_BITS
    docs = ((base + i, doc) for i, doc in enumerate(reader))
    records = [processor.process(o, doc, repeat) for o, doc, repeat in mark_repeats(docs, config)]
    blocks = [*_exact_blocks(records, parts), *_band_blocks(records, config, band_parts)]
    info = {"read": reader.stats.as_dict(), "shuffle_bytes": sum(len(b) for b in blocks)}
    return [to_ipc(records_table(records)), info, *blocks]


def _exact_blocks(records: list[DocRecord], parts: int) -> list[bytes]:
    rows: list[list[Any]] = [[] for _ in range(parts)]
    for r in records:
        if r.verdict is None or r.verdict.rule != EMPTY_RULE:  # what DedupMerger sends to ExactIndex
            rows[int.from_bytes(r.digest[:8], "little") % parts].append((r.ordinal, r.digest, r.doc_id))
    return [to_ipc(pa.Table.from_pylist(_as_dicts(block, _EXACT), schema=_EXACT)) for block in rows]


def _band_blocks(records: list[DocRecord], config: CurateConfig, band_parts: int) -> list[bytes]:
    if not band_parts:
        return []
    hasher = _band_hasher(config)
    rows: list[list[Any]] = [[] for _ in range(band_parts)]
    for r in records:
        # What reaches NearIndex: signed (not filtered, not empty) and not contaminated; exact
        # duplicates are dropped in the band task, once the exact partitions are known.
        if r.signature is None or r.contamination is not None:
            continue
        keys = [hasher._H(r.signature[start:end]) for start, end in hasher.hashranges]
        signature = r.signature.tobytes()
        for q in range(band_parts):
            rows[q].append((r.ordinal, r.doc_id, signature, keys[q::band_parts]))
    return [to_ipc(pa.Table.from_pylist(_as_dicts(block, _BANDS), schema=_BANDS)) for block in rows]


def _as_dicts(rows: list[tuple], schema: pa.Schema) -> list[dict[str, Any]]:
    return [dict(zip(schema.names, row, strict=True)) for row in rows]


def exact_partition(*blocks: bytes) -> bytes:
    """One digest partition from every file -> its exact duplicates and the document each repeats."""
    table = pa.concat_tables([from_ipc(b) for b in blocks]).sort_by("ordinal")
    index = ExactIndex()
    found = []
    for ordinal, digest, doc_id in zip(*(table.column(n).to_pylist() for n in _EXACT.names), strict=True):
        earlier = index.first_seen(digest, doc_id)
        if earlier is not None:
            found.append((ordinal, earlier))
    return to_ipc(pa.Table.from_pylist(_as_dicts(found, _DUPLICATES), schema=_DUPLICATES))


def band_partition(config_json: dict[str, Any], num_exact: int, *blocks: bytes) -> bytes:
    """A group of LSH bands from every file (after the exact results) -> verified candidate pairs."""
    threshold = CurateConfig.model_validate(config_json).near_dedup.threshold
    duplicates = {o for b in blocks[:num_exact] for o in from_ipc(b).column("ordinal").to_pylist()}
    table = pa.concat_tables([from_ipc(b) for b in blocks[num_exact:]]).sort_by("ordinal")
    signatures: dict[int, np.ndarray] = {}
    ids: dict[int, str] = {}
    buckets: dict[tuple[int, bytes], list[int]] = {}
    for row in table.to_pylist():
        ordinal = row["ordinal"]
        if ordinal in duplicates:
            continue
        signatures[ordinal] = signature_of(row["signature"])
        ids[ordinal] = row["doc_id"]
        for band, key in enumerate(row["keys"]):
            buckets.setdefault((band, key), []).append(ordinal)
    candidates = {
        (later, earlier) for m in buckets.values() for j, later in enumerate(m) for earlier in m[:j]
    }
    pairs = []
    for later, earlier in sorted(candidates):
        jaccard = float(np.mean(signatures[earlier] == signatures[later]))  # as NearIndex.first_match
        if jaccard >= threshold:
            pairs.append((later, earlier, ids[earlier], jaccard))
    return to_ipc(pa.Table.from_pylist(_as_dicts(pairs, _PAIRS), schema=_PAIRS))


class _ResolvedExact:
    """Stands in for ExactIndex in DedupMerger: the answer for the current document, precomputed."""

    def __init__(self, duplicate_of: dict[int, str]) -> None:
        self.duplicate_of = duplicate_of
        self.current = -1

    def first_seen(self, digest: bytes, doc_id: str) -> str | None:
        return self.duplicate_of.get(self.current)


class _ResolvedNear:
    """Stands in for NearIndex: the current document's verified earlier matches, of which the first
    still kept (indexed) wins, as NearIndex.first_match decides in document order."""

    def __init__(self, matches: dict[int, list[tuple[int, str, float]]]) -> None:
        self.matches = matches
        self.wanted = {earlier for found in matches.values() for earlier, _, _ in found}
        self.indexed: set[int] = set()  # only documents that some later one matches
        self.current = -1

    def first_match(self, signature: np.ndarray, doc_id: str) -> tuple[str, float] | None:
        for earlier, earlier_id, jaccard in self.matches.get(self.current, ()):
            if earlier in self.indexed:
                return earlier_id, jaccard
        if self.current in self.wanted:
            self.indexed.add(self.current)
        return None


def _merged_read_stats(readers: list[CorpusReader], jobs: list[dict], per_file: list[dict]) -> list[dict]:
    """Per-file reader stats -> per-corpus ones, as one reader over all its files counts them."""
    merged: dict[str, dict[str, Any]] = {}
    for job, found in zip(jobs, per_file, strict=True):
        into = merged.setdefault(job["source"], {k: ([] if k == "problems" else 0) for k in found})
        for key, value in found.items():
            into[key] = (into[key] + value)[:20] if key == "problems" else into[key] + value
    empty = {k: ([] if k == "problems" else 0) for k in (per_file[0] if per_file else {})}
    return [merged.get(reader.source, dict(empty)) for reader in readers]


def run_ray(
    ray: Any,
    readers: list[CorpusReader],
    config: CurateConfig,
    stats: CurationStats,
    progress: Progress,
    references: ReferenceIndex | None,
    write: Any,
) -> list[dict[str, Any]]:
    """Run the tasks, then replay decisions in document order; `write(merger, record)` is the
    local pipeline's decide/count/write step. Returns the per-corpus read stats."""
    jobs = [
        {
            "index": k,
            "source": reader.source,
            "path": str(path),
            "name": reader.name_of(path),
            "text_field": reader.text_field,
        }
        for k, (reader, path) in enumerate((r, p) for r in readers for p in r.files)
    ]
    cpus = cluster_cpus(ray)
    parts = min(cpus, _MAX_PARTITIONS) if config.exact_dedup.enabled else 0
    band_parts = min(cpus, config.near_dedup.bands) if config.near_dedup.enabled else 0
    config_json = config.model_dump(mode="json")
    shared_refs = ray.put(references) if references is not None else None
    mapper = ray.remote(map_file).options(num_returns=2 + parts + band_parts, max_retries=RETRIES)
    outputs = [
        mapper.remote(job, config_json, shared_refs, parts, band_parts, storage_options()) for job in jobs
    ]
    exact = [
        ray.remote(exact_partition).options(max_retries=RETRIES).remote(*(out[2 + p] for out in outputs))
        for p in range(parts)
    ]
    bands = [
        ray.remote(band_partition)
        .options(max_retries=RETRIES)
        .remote(config_json, len(exact), *exact, *(out[2 + parts + q] for out in outputs))
        for q in range(band_parts)
    ]
    per_file, shuffled = _watch(ray, progress, [out[1] for out in outputs], exact + bands)
    last_run.clear()
    last_run.update(tasks=len(jobs) + len(exact) + len(bands), partitions=parts, band_groups=band_parts)
    last_run.update(shuffle_bytes=shuffled)
    merger = DedupMerger(config)
    resolved_exact = _ResolvedExact(_duplicates(ray, exact))
    resolved_near = _ResolvedNear(_matches(ray, bands))
    merger.exact = resolved_exact if merger.exact is not None else None
    merger.near = resolved_near if merger.near is not None else None
    ordinal = 0
    for k, out in enumerate(outputs):
        for record in iter_records(from_ipc(get(ray, out[0]))):
            resolved_exact.current = resolved_near.current = record.ordinal
            record.ordinal = ordinal
            write(merger, record)
            ordinal += 1
        outputs[k] = None  # drop the refs: the object store frees the file's records
    return _merged_read_stats(readers, jobs, per_file)


def _duplicates(ray: Any, exact: list[Any]) -> dict[int, str]:
    found: dict[int, str] = {}
    for block in get(ray, exact):
        table = from_ipc(block)
        found.update(
            zip(table.column("ordinal").to_pylist(), table.column("duplicate_of").to_pylist(), strict=True)
        )
    return found


def _matches(ray: Any, bands: list[Any]) -> dict[int, list[tuple[int, str, float]]]:
    """Verified pairs from every band group -> for each document, its distinct earlier matches in order."""
    found: dict[int, dict[int, tuple[int, str, float]]] = {}
    for block in get(ray, bands):
        for row in from_ipc(block).to_pylist():
            found.setdefault(row["ordinal"], {})[row["earlier"]] = (
                row["earlier"],
                row["earlier_id"],
                row["jaccard"],
            )
    return {later: [pairs[e] for e in sorted(pairs)] for later, pairs in found.items()}


def _watch(
    ray: Any, progress: Progress, stat_refs: list[Any], others: list[Any]
) -> tuple[list[dict[str, Any]], int]:
    """One bar over every task, with the documents and bytes per second of the finished map tasks."""
    task = progress.add_task("curate on Ray (tasks)", total=len(stat_refs) + len(others))
    start = time.perf_counter()
    position = {ref: k for k, ref in enumerate(stat_refs)}
    per_file: list[dict[str, Any]] = [{} for _ in stat_refs]
    docs = num_bytes = shuffled = 0
    pending = [*stat_refs, *others]
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        for ref in done:
            if ref in position:
                found = get(ray, ref)
                per_file[position[ref]] = found["read"]
                docs += found["read"]["documents"]
                num_bytes += found["read"]["bytes"]
                shuffled += found["shuffle_bytes"]
            else:
                get(ray, ref)  # a failed partition task fails the run here
        seconds = max(time.perf_counter() - start, 1e-9)
        progress.update(
            task,
            advance=len(done),
            description=f"curate on Ray: {num_bytes / 1e6 / seconds:.2f} MB/s, {docs / seconds:,.0f} docs/s",
        )
    return per_file, shuffled
