"""`domainlm demo`: the whole path on the shipped samples, ending in one report.html."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from domainlm.cli.options import Json, Overwrite, out_option
from domainlm.outputs import to_json
from domainlm.progress import console


def _print_summary(bits_per_byte: dict[str, dict[str, float]], report: Path) -> None:
    table = Table(title="bits per byte on held-out text (lower is better)")
    domains = list(next(iter(bits_per_byte.values())))
    table.add_column("model")
    for domain in domains:
        table.add_column(domain, justify="right")
    for model, row in bits_per_byte.items():
        table.add_row(model, *(f"{row[d]:.3f}" for d in domains))
    console.print(table)
    console.print(f"report: {report.resolve()}")


def demo_command(
    out: Annotated[Path, out_option("Output folder for every stage and report.html.")] = Path("demo_out"),
    quick: Annotated[bool, typer.Option(help="Tiny sizes: a smoke test of every stage.")] = False,
    steps: Annotated[
        int | None, typer.Option(min=1, help="Pretraining steps (default 150; 30 with --quick).")
    ] = None,
    zero_stage: Annotated[int, typer.Option(min=0, max=3, help="DeepSpeed ZeRO stage for pretraining.")] = 3,
    overwrite: Overwrite = False,
    as_json: Json = False,
) -> None:
    """Train a finance tokenizer, report its coverage vs GPT-2, mix 51/49, plan, pretrain, evaluate."""
    from dataclasses import replace

    from domainlm.demo.pipeline import run_demo
    from domainlm.demo.steps import DemoSettings

    settings = DemoSettings.quick(out) if quick else DemoSettings(out=out)
    settings = replace(settings, zero_stage=zero_stage, **({"train_steps": steps} if steps else {}))
    result = run_demo(settings, overwrite=overwrite)
    if as_json:
        print(to_json(result.as_dict()), end="")
    else:
        _print_summary(result.bits_per_byte, result.report)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
