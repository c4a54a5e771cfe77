"""`domainlm demo`: the whole path on the shipped samples, ending in one report.html."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from domainlm.cli.options import Json, Overwrite, out_option
from domainlm.outputs import to_json
from domainlm.progress import console

if TYPE_CHECKING:
    from domainlm.demo.pipeline import DemoResult


def _print_summary(result: DemoResult) -> None:
    from domainlm.demo.adaptation import headlines, tokens_label

    rows = result.models
    table = Table(title="bits per byte on held-out text (lower is better)")
    domains = list(rows[0].bits_per_byte)
    for column in ("model", "trained on"):
        table.add_column(column)
    table.add_column("training tokens", justify="right")
    for domain in domains:
        table.add_column(domain, justify="right")
    for row in rows:
        table.add_row(row.label, row.trained_on, tokens_label(row, rows),
                      *(f"{row.bits_per_byte[d]:.3f}" for d in domains))  # fmt: skip
    console.print(table)
    for line in headlines(rows):
        console.print(line, markup=False)
    wall, cpu = sum(s.seconds for s in result.steps), sum(s.cpu_seconds for s in result.steps)
    console.print(f"{wall:.0f} s wall, {cpu:.0f} CPU-s; report: {result.report.resolve()}", markup=False)


def demo_command(
    out: Annotated[Path, out_option("Output folder for every stage and report.html.")] = Path("demo_out"),
    quick: Annotated[bool, typer.Option(help="Tiny sizes: a smoke test of every stage.")] = False,
    steps: Annotated[
        int | None,
        typer.Option(
            min=1, help="Pretraining steps of each of (a), (b), (c) (default 150; 30 with --quick)."
        ),
    ] = None,
    zero_stage: Annotated[int, typer.Option(min=0, max=3, help="DeepSpeed ZeRO stage for pretraining.")] = 3,
    overwrite: Overwrite = False,
    as_json: Json = False,
) -> None:
    """Finance tokenizer and its coverage vs GPT-2, then (a) general-only vs (b) 51/49-mix vs (c) (a) continued
    on the mix, same seed and tokens per run, scored per domain in bits per byte."""
    from dataclasses import replace

    from domainlm.demo.pipeline import run_demo
    from domainlm.demo.steps import DemoSettings

    settings = DemoSettings.quick(out) if quick else DemoSettings(out=out)
    settings = replace(settings, zero_stage=zero_stage, **({"train_steps": steps} if steps else {}))
    result = run_demo(settings, overwrite=overwrite)
    if as_json:
        print(to_json(result.as_dict()), end="")
    else:
        _print_summary(result)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
