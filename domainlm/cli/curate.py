"""`domainlm curate`: corpora -> curated JSON Lines + report (thin wrapper over domainlm.corpus.curate)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from domainlm.cli.executor_options import Executor, RayAddress
from domainlm.cli.options import Json, Overwrite, Quiet, StorageOptions, out_option, use_storage_options
from domainlm.config import resolve_cli_path
from domainlm.machine import usable_cores
from domainlm.outputs import to_json
from domainlm.progress import console
from domainlm.storage import is_url
from domainlm.units import human_count

_HELP = """Normalize, deduplicate (exact + MinHash near-duplicates), quality-filter and optionally
redact corpora before `domainlm mix`. Writes OUT/<source>.jsonl.gz (kept documents, each with its
source and input id), OUT/removed.jsonl.gz (every removal and why), OUT/report.json and report.md.
With --reference EVAL.jsonl, training documents sharing 13-word n-grams with that held-out or
benchmark text are removed (decontamination)."""


def _counts_row(name: str, counts: dict[str, Any], style: str = "") -> list[str]:
    kept = counts["docs_kept"] / counts["docs_in"] if counts["docs_in"] else 0.0
    # 12.3M rather than 12,345,678 keeps the table inside 80 columns when piped.
    cells = [
        name,
        human_count(counts["docs_in"]),
        human_count(counts["docs_removed"]),
        human_count(counts["docs_kept"]),
        human_count(counts["words_in"]),
        human_count(counts["words_removed"]),
        human_count(counts["words_kept"]),
        f"{kept:.1%}",
    ]
    return [f"[{style}]{c}[/{style}]" for c in cells] if style else cells


def _table(title: str, first: str) -> Table:
    # SIMPLE_HEAD: no vertical rules, so 8 columns fit 80 characters when output is piped.
    table = Table(
        title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 0, 0, 1), pad_edge=False
    )
    table.add_column(first, no_wrap=True)
    for column in ("docs in", "removed", "kept", "words in", "removed", "kept", "kept %"):
        table.add_column(column, justify="right", no_wrap=True, min_width=len(column))
    return table


def print_report(report: dict[str, Any], run: dict[str, Any]) -> None:
    stages = _table("Curation by stage and rule", "stage / rule")
    for stage in report["stages"]:
        stages.add_row(*_counts_row(stage["stage"], stage, "bold"))
        for rule in stage.get("rules", []):
            stages.add_row(*_counts_row(f"  {rule['rule']}", rule))
        if stage["stage"] == "redact":
            found = ", ".join(f"{k} {v:,}" for k, v in stage["redactions"].items())
            stages.add_row(f"  ({found})")
    console.print(stages)
    sources = _table("Per source", "source")
    for source in report["sources"]:
        sources.add_row(*_counts_row(source["source"], source))
    console.print(sources)
    console.print(_words_table(report))
    for stage in report["stages"]:
        if stage["stage"] == "paragraph_dedup":
            p = stage["paragraphs"]
            console.print(
                f"paragraph dedup: {p['paragraphs_removed']:,}/{p['paragraphs_in']:,} paragraphs, "
                f"{p['bytes_removed']:,}/{p['bytes_in']:,} bytes ({p['removed_fraction_bytes']:.1%}), "
                f"{p['words_removed']:,} words removed from {p['documents_changed']:,} kept documents"
            )
        if stage["stage"] == "decontaminate":
            console.print(
                f"decontaminate: {stage['docs_removed']:,} documents share n-grams with "
                f"{stage['reference_documents']:,} reference documents ({stage['reference_ngrams']:,} n-grams)"
            )
    totals = report["totals"]
    where = f"wrote {run['out']}" if run["out"] else "dry run: nothing written"
    console.print(
        f"kept {totals['docs_kept']:,}/{totals['docs_in']:,} documents ({totals['kept_fraction_docs']:.1%}), "
        f"{totals['words_kept']:,}/{totals['words_in']:,} words ({totals['kept_fraction_words']:.1%}); "
        f"{where}; {run['seconds']:.1f} s, {run['docs_per_s']:,.0f} docs/s, {run['mb_per_s']:.2f} MB/s"
    )


def _words_table(report: dict[str, Any]) -> Table:
    """Share of words kept per source at each stage and rule: a rule that misfires on one domain's
    format (e.g. `duplicate_lines` on Debian copyright files) stands out in its source's column."""
    from domainlm.corpus.curate.report import words_by_source, words_cell

    table = Table(
        title="Words kept per source, of those reaching each stage / rule",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        padding=(0, 0, 0, 1),
        pad_edge=False,
    )
    table.add_column("stage / rule", no_wrap=True)
    for source in report["sources"]:
        table.add_column(source["source"], justify="right", no_wrap=True)
    for name, cells in words_by_source(report):
        table.add_row(name, *(words_cell(c) for c in cells))
    return table


def curate_command(
    corpus: Annotated[
        list[str],
        typer.Argument(
            metavar="CORPUS",
            help="Corpus files, folders or globs (txt, jsonl[.gz|.zst], parquet), local or s3://...; "
            "NAME=PATH names it.",
        ),
    ],
    out: Annotated[
        str | None, out_option("Output directory or URL, e.g. s3://bucket/curated (needed unless --dry-run).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Curate YAML (default: built-in).")
    ] = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="Override a config key: --set near_dedup.threshold=0.7")
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", "-w", help="Processes for per-document work (0 = one per CPU core).")
    ] = 0,
    shards: Annotated[
        int,
        typer.Option(
            "--shards", help="Run as K shard jobs + a signature merge (the cluster recipe); 0 = stream."
        ),
    ] = 0,
    text_field: Annotated[
        str, typer.Option("--text-field", help="JSON/parquet field with the text.")
    ] = "text",
    reference: Annotated[
        list[str] | None,
        typer.Option(
            "--reference",
            help="Held-out or benchmark text (any corpus format; repeatable): training documents "
            "sharing n-grams with it are removed (decontaminate.ngram_words, min_overlap).",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would be removed; write nothing.")
    ] = False,
    overwrite: Overwrite = False,
    executor: Executor = "local",
    ray_address: RayAddress = None,
    storage_option: StorageOptions = None,
    json_output: Json = False,
    quiet: Quiet = False,
) -> None:
    # Imported here so that `domainlm --help` and other commands do not load numpy/datasketch.
    from domainlm.corpus.curate import curate, load_curate_config, parse_corpus_args

    use_storage_options(storage_option)

    workers = workers or usable_cores()  # 0: one per CPU core; curate() validates the rest
    cfg = load_curate_config(config, overrides or [])
    if reference:
        paths = [*cfg.decontaminate.references, *(str(resolve_cli_path(p)) for p in reference)]
        cfg.decontaminate.references = paths
    specs = parse_corpus_args(corpus, text_field=text_field)
    target = out if out is None or is_url(out) else Path(out)
    result = curate(
        specs,
        cfg,
        out=target,
        workers=workers,
        shards=shards,
        dry_run=dry_run,
        overwrite=overwrite,
        quiet=quiet,
        executor=executor,
        ray_address=ray_address,
    )
    if json_output:
        print(to_json({**result.report, "run": result.run_info}), end="")
    else:
        print_report(result.report, result.run_info)


def register(app: typer.Typer) -> None:
    app.command("curate", help=_HELP)(curate_command)
