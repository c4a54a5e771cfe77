"""`domainlm vocab report`: tokenizers x corpora (+ term lists) -> coverage table, report.json/.md/.html."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from domainlm.cli.options import Json, Overwrite, Quiet, out_option
from domainlm.outputs import check_output_dir, to_json
from domainlm.progress import console, err_console

app = typer.Typer(help="Vocabulary coverage: how well tokenizers cover domain text.", no_args_is_help=True)


@app.command("report")
def report(
    out: Annotated[Path, out_option("Output directory for report.json/.md/.html and charts.")],
    tokenizer: Annotated[
        list[str] | None,
        typer.Option(
            "--tokenizer",
            metavar="NAME=PATH",
            help="NAME=PATH of a tokenizer directory, or gpt2 / bert-base-uncased.",
        ),
    ] = None,
    corpus: Annotated[
        list[str] | None,
        typer.Option(
            "--corpus",
            metavar="NAME=PATH",
            help="NAME=PATH (file, folder, glob), finance / legal / medical / general, or a mix "
            "directory (one corpus per source: its held-out text, as `eval --data` reads it).",
        ),
    ] = None,
    terms: Annotated[
        list[str] | None,
        typer.Option(
            "--terms",
            metavar="NAME=FILE",
            help="NAME=FILE (one term per line, or JSON), or legal / finance / medical.",
        ),
    ] = None,
    baseline: Annotated[
        str | None,
        typer.Option("--baseline", metavar="NAME", help="Tokenizer to compare against (default: first)."),
    ] = None,
    sample_docs: Annotated[
        int, typer.Option("--sample-docs", help="Documents sampled per corpus; 0 = all.")
    ] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the document sample.")] = 0,
    top_words: Annotated[int, typer.Option("--top-words", help="Fragmented words listed per corpus.")] = 15,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
    json_out: Json = False,
) -> None:
    """Compare tokenizers on corpora: fertility, bytes/token, split words, unknown and byte-fallback rates,
    vocabulary use, the most fragmented words, term pieces, and tokens relative to a baseline."""
    from domainlm.tokenizer.coverage import build_coverage_report
    from domainlm.tokenizer.report import write_report
    from domainlm.tokenizer.resolve import resolve_terms, resolve_tokenizer

    tokenizers = [resolve_tokenizer(t) for t in tokenizer or []]
    corpora = [pair for c in corpus or [] for pair in expand_corpus(c)]
    term_lists = [resolve_terms(t) for t in terms or []]
    # Refuse a bad --out before minutes of measuring, not after (write_report checks again under its lock).
    check_output_dir(
        out, overwrite=overwrite, inputs=[path for _, path in [*tokenizers, *corpora, *term_lists]]
    )
    result = build_coverage_report(
        tokenizers,
        corpora,
        term_lists,
        baseline=baseline,
        sample_docs=sample_docs,
        seed=seed,
        top_words=top_words,
        quiet=quiet or json_out,
    )
    files = write_report(result, out, overwrite=overwrite)
    if json_out:
        print(to_json(result), end="")
        return
    # Piped output has no width; 140 columns keeps the table on one line per row in logs.
    out_console = console if console.is_terminal else Console(width=140)
    out_console.print(coverage_table(result))
    for line in _headlines(result):
        out_console.print(f"- {line}")
    err_console.print(f"wrote {', '.join(str(f) for f in files[:3])} (+{len(files) - 3} charts)")


def expand_corpus(value: str) -> list[tuple[str, Path]]:
    """One --corpus value -> (name, path) pairs: a mix directory is one corpus per source, its held-out
    text, named and read exactly as `eval --data MIX` reads it (domainlm.mix.manifest.held_out_texts)."""
    from domainlm.mix.manifest import held_out_texts, is_mix_dir
    from domainlm.naming import split_named
    from domainlm.tokenizer.resolve import resolve_corpus

    name, path = resolve_corpus(value)
    if not is_mix_dir(path):
        return [(name, path)]
    named = split_named(value, "--corpus")[0] is not None
    return held_out_texts(path, named=f"--corpus {value!r}" if named else None)


def _headlines(result: dict) -> list[str]:
    from domainlm.tokenizer.report import headlines

    return headlines(result)


def coverage_table(result: dict) -> Table:
    """The terminal view: one row per corpus x tokenizer."""
    table = Table(
        title=f"vocabulary coverage (baseline {result['settings']['baseline']})", box=box.SIMPLE_HEAD
    )
    # Short headers so the table fits 80 columns (pipes and CI logs); report.md has the long names.
    table.add_column("corpus", no_wrap=True)
    table.add_column("tokenizer", no_wrap=True)
    for name in ("tok/word", "B/tok", "split", "unk", "byte fb", "vocab", "vs base", "digits", "lost"):
        table.add_column(name, justify="right", no_wrap=True, min_width=len(name))
    # Green marks the fewest tokens per word among lossless tokenizers only: a lossy one (lowercasing,
    # dropping whitespace) is shorter because it throws text away. "lost": characters the round trip changes.
    best = {}
    for m in result["metrics"]:
        if m.get("lossless", True):
            best[m["corpus"]] = min(best.get(m["corpus"], m["fertility"]), m["fertility"])
    for m in result["metrics"]:
        fertility = f"{m['fertility']:.3f}"
        if m.get("lossless", True) and m["fertility"] == best[m["corpus"]]:
            fertility = f"[bold green]{fertility}[/]"
        lossy = not m.get("lossless", True)
        table.add_row(
            m["corpus"], m["tokenizer"] + (" [red](lossy)[/]" if lossy else ""), fertility,
            f"{m['bytes_per_token']:.2f}", f"{m['split_word_share']:.1%}", f"{m['unk_rate']:.2%}",
            f"{m['byte_fallback_rate']:.2%}", f"{m['vocab_used_share']:.1%}", f"{m['tokens_vs_baseline']:.3f}",
            f"{m.get('digit_token_share', 0):.1%}", f"[red]{m['lost_char_share']:.1%}[/]" if lossy else "0",
        )  # fmt: skip
    return table


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="vocab")
