"""Corpora + curate config -> OUT/<source>.jsonl.gz (kept documents), OUT/removed.jsonl.gz (one line per
removal with its reason), OUT/report.json and OUT/report.md.

Two ways to run, same result byte for byte:
- streaming (default): a process pool computes DocRecords (normalize, rules, MinHash) in input order,
  and the main process merges them (global exact + near dedup) and writes as they arrive: one pass;
- sharded (`shards=K`): K independent shard jobs write signature files, one merge decides, and a
  write pass re-reads the corpus for the kept documents: the cluster recipe, run locally.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.progress import Progress

from domainlm.corpus.curate.config import CurateConfig
from domainlm.corpus.curate.decontaminate import ReferenceIndex
from domainlm.corpus.curate.dedup_paragraph import ParagraphCut, drop_paragraphs
from domainlm.corpus.curate.filters import enabled_rule_names
from domainlm.corpus.curate.inputs import CorpusSpec, build_readers, describe_inputs, iter_documents
from domainlm.corpus.curate.merge import DedupMerger, Removal
from domainlm.corpus.curate.process import DocRecord, finalize_documents, process_documents
from domainlm.corpus.curate.report import STAGES, CurationStats, Example, build_report, render_markdown
from domainlm.corpus.curate.shards import merged_records, run_shards
from domainlm.corpus.curate.writer import REMOVED_LOG, CuratedWriter, JsonlGzWriter
from domainlm.corpus.readers import CorpusReader
from domainlm.errors import ConfigError
from domainlm.outputs import atomic_output_dir, atomic_write_text, write_json
from domainlm.progress import make_progress
from domainlm.storage import is_url, local_path_of
from domainlm.storage.output import remote_output_dir

logger = logging.getLogger(__name__)
LAST_FILES = ("report.json", "report.md")  # written last: a remote output without them is incomplete


@dataclass
class CurateResult:
    report: dict[str, Any]
    seconds: float
    out: Path | str | None  # a str for a URL (s3://bucket/curated)

    @property
    def run_info(self) -> dict[str, Any]:
        """Throughput of this run (kept out of report.json, which must not change between runs)."""
        docs = self.report["totals"]["docs_in"]
        num_bytes = sum(entry["read"]["bytes"] for entry in self.report["inputs"])
        seconds = max(self.seconds, 1e-9)
        return {
            "seconds": round(self.seconds, 3),
            "docs_per_s": round(docs / seconds, 1),
            "mb_per_s": round(num_bytes / 1e6 / seconds, 3),
            "out": str(self.out) if self.out else None,
        }


def stage_names(config: CurateConfig) -> list[str]:
    enabled = {
        "normalize": config.normalize.enabled,
        "exact_dedup": config.exact_dedup.enabled,
        "decontaminate": bool(config.decontaminate.references),
        "filters": any(f.enabled for f in config.all_filters()),
        "near_dedup": config.near_dedup.enabled,
        "redact": config.redact.enabled,
        "paragraph_dedup": config.paragraph_dedup.enabled,
    }
    return [stage for stage in STAGES if enabled[stage]]


class _Sink:
    """Where decisions go when not a dry run: kept texts per source, and the removal log."""

    def __init__(self, out_dir: Path, sources: list[str]) -> None:
        self.out_dir = out_dir
        self.kept = CuratedWriter(out_dir, sources)
        self.removed = JsonlGzWriter(out_dir / REMOVED_LOG)

    def close(self) -> list[dict[str, Any]]:
        self.removed.close()
        return self.kept.close()


def curate(
    specs: list[CorpusSpec],
    config: CurateConfig,
    out: Path | str | None = None,
    workers: int = 1,
    shards: int = 0,
    dry_run: bool = False,
    overwrite: bool = False,
    quiet: bool = True,
    executor: str = "local",
    ray_address: str | None = None,
) -> CurateResult:
    """Run every enabled stage; with `dry_run` nothing is written and `out` may be None.
    `executor="ray"`: the per-document work and dedup partitions run as Ray tasks (ray_executor.py)."""
    if workers < 1:
        raise ConfigError(f"--workers {workers}: must be at least 1")
    if shards < 0:
        raise ConfigError(f"--shards {shards}: must be 0 (no sharding) or a number of shards")
    if not dry_run and out is None:
        raise ConfigError(
            "--out is required (the directory for curated documents and the report), or pass --dry-run"
        )
    start = time.perf_counter()
    readers = build_readers(specs)
    _check_source_names(specs, config)
    stats = CurationStats(
        stage_names(config), enabled_rule_names(config.all_filters()), config.examples_per_rule
    )
    references = _reference_index(config)
    if references is not None:
        stats.stage_info["decontaminate"] = references.describe()
    cluster = _cluster(executor, ray_address, shards)  # connected before anything is written
    with (
        cluster as ray,
        _output(specs, out, dry_run, overwrite, quiet) as tmp,
        make_progress(quiet) as progress,
    ):
        sink = _Sink(tmp, [spec.source for spec in specs]) if tmp is not None else None
        if ray is not None:
            from domainlm.corpus.curate.ray_executor import run_ray

            def write(merger: DedupMerger, record: DocRecord) -> None:
                removal, cut = _decide(merger, record)
                stats.add(record, removal, cut)
                _apply(sink, record, removal, cut)

            read_stats = run_ray(ray, readers, config, stats, progress, references, write)
        elif shards:
            work_root = Path(out).parent if out is not None and not is_url(str(out)) else None
            read_stats = _run_sharded(
                specs, readers, config, stats, sink, workers, shards, progress, work_root, references
            )
        else:
            read_stats = _run_streaming(readers, config, stats, sink, workers, progress, references)
        outputs = sink.close() if sink else None
        report = build_report(
            stats, config.model_dump(mode="json"), describe_inputs(readers, read_stats), outputs
        )
        if tmp is not None:
            write_json(tmp / "report.json", report)
            atomic_write_text(tmp / "report.md", render_markdown(report))
    return CurateResult(report, time.perf_counter() - start, None if dry_run else out)


def _output(
    specs: list[CorpusSpec], out: Path | str | None, dry_run: bool, overwrite: bool, quiet: bool
) -> contextlib.AbstractContextManager[Path | None]:
    """Where the run writes: nothing (dry run), a local temp dir renamed into place, or for a URL a
    local staging dir uploaded with the report last (domainlm.storage.output)."""
    if dry_run:
        return contextlib.nullcontext(None)
    if is_url(str(out)) and local_path_of(str(out)) is None:
        return remote_output_dir(
            str(out), overwrite=overwrite, command="curate", last=LAST_FILES, quiet=quiet
        )
    local = local_path_of(str(out)) or Path(out)
    inputs = [path for spec in specs for path in spec.paths if not is_url(path)]
    return atomic_output_dir(local, overwrite=overwrite, command="curate", inputs=inputs)


def _cluster(executor: str, ray_address: str | None, shards: int) -> contextlib.AbstractContextManager:
    """The Ray connection for --executor ray (None for local), checked before the output exists."""
    from domainlm.executors import check_executor

    if check_executor(executor, ray_address) == "local":
        return contextlib.nullcontext(None)
    if shards:
        raise ConfigError(f"--shards {shards} with --executor ray: Ray splits the work itself; drop --shards")
    from domainlm.executors.ray_cluster import ray_cluster

    return ray_cluster(ray_address)


def _check_source_names(specs: list[CorpusSpec], config: CurateConfig) -> None:
    names = [spec.source for spec in specs]
    unknown = sorted(set(config.source_filters) - set(names))
    if unknown:
        raise ConfigError(
            f"source_filters: no corpus named {', '.join(unknown)} (corpora: {', '.join(names)}); "
            "name corpora as NAME=PATH or fix the key"
        )


def _reference_index(config: CurateConfig) -> ReferenceIndex | None:
    """The reference n-grams, read once here and sent to every worker and shard job."""
    if not config.decontaminate.references:
        return None
    index = ReferenceIndex(config.decontaminate, config.normalize)
    logger.info("curate: %d reference n-grams from %d documents", len(index), len(index.ids))
    return index


def _decide(merger: DedupMerger, record: DocRecord) -> tuple[Removal | None, ParagraphCut | None]:
    removal = merger.decide(record)
    if removal is not None:
        return removal, None
    return merger.cut_paragraphs(record)


def _apply(sink: _Sink | None, record: DocRecord, removal: Removal | None, cut: ParagraphCut | None) -> None:
    if sink is None:
        return
    if removal is None:
        assert record.text is not None, "streaming records carry their text"
        text = drop_paragraphs(record.text, cut.drop) if cut is not None else record.text
        sink.kept.write(record.source, record.doc_id, text)
    else:
        sink.removed.write(removal.as_dict(record))


def _run_streaming(
    readers: list[CorpusReader],
    config: CurateConfig,
    stats: CurationStats,
    sink: _Sink | None,
    workers: int,
    progress: Progress,
    references: ReferenceIndex | None,
) -> None:
    merger = DedupMerger(config)
    task = progress.add_task("curate (documents)", total=None)
    for record in process_documents(iter_documents(readers), config, workers, references):
        removal, cut = _decide(merger, record)
        stats.add(record, removal, cut)
        _apply(sink, record, removal, cut)
        progress.advance(task)
    return None  # the readers ran in this process, so their own stats are complete


def _run_sharded(
    specs: list[CorpusSpec],
    readers: list[CorpusReader],
    config: CurateConfig,
    stats: CurationStats,
    sink: _Sink | None,
    workers: int,
    shards: int,
    progress: Progress,
    work_root: Path | None,
    references: ReferenceIndex | None,
) -> list[dict[str, Any]]:
    keep = bytearray()  # one byte per document: the only per-document state kept between passes
    cuts: dict[int, tuple[int, ...]] = {}  # paragraphs to drop, for the kept documents that have some
    pending: dict[int, Example] = {}
    with tempfile.TemporaryDirectory(prefix=".curate-signatures-", dir=work_root) as work:
        task = progress.add_task(f"signatures ({shards} shards)", total=None)
        paths, read_stats = run_shards(specs, config, shards, Path(work), workers, references)
        progress.update(task, completed=1, total=1)
        num_bytes = sum(p.stat().st_size for p in paths)
        logger.info("curate: %d shard signature files, %.1f MB; merging", len(paths), num_bytes / 1e6)
        merge_task = progress.add_task("merge (documents)", total=None)
        merger = DedupMerger(config)
        for record in merged_records(paths):
            assert record.ordinal == len(keep), "shard streams out of order"
            removal, cut = _decide(merger, record)
            example = stats.add(record, removal, cut)
            if example is not None:
                pending[record.ordinal] = example
            if cut is not None:
                cuts[record.ordinal] = cut.drop
            keep.append(removal is None)
            if sink is not None and removal is not None:
                sink.removed.write(removal.as_dict(record))
            progress.advance(merge_task)
    if sink is not None or pending:
        logger.info("curate: merge kept %d of %d documents; writing", sum(keep), len(keep))
        _write_pass(readers, config, keep, cuts, pending, sink, workers, progress)
    return read_stats


def _write_pass(
    readers: list[CorpusReader],
    config: CurateConfig,
    keep: bytearray,
    cuts: dict[int, tuple[int, ...]],
    pending: dict[int, Example],
    sink: _Sink | None,
    workers: int,
    progress: Progress,
) -> None:
    """Re-read the corpus; finalize (normalize + redact) the kept documents and the quoted removals."""
    task = progress.add_task("write (documents)", total=len(keep))
    wanted = (
        (ordinal, doc)
        for ordinal, doc in iter_documents(readers)
        if (sink is not None and keep[ordinal]) or ordinal in pending
    )
    for ordinal, doc, text in finalize_documents(wanted, config, workers):
        if ordinal in pending:
            pending[ordinal].text = text
        if sink is not None and keep[ordinal]:
            text = drop_paragraphs(text, cuts[ordinal]) if ordinal in cuts else text
            sink.kept.write(doc.source, doc.doc_id, text)
        progress.update(task, completed=ordinal + 1)
