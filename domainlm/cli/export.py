"""`domainlm export megatron MIX --out DIR`: a mix -> Megatron-LM / NeMo / GPT-NeoX indexed datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from domainlm.cli.options import Json, Overwrite, out_option
from domainlm.config import resolve_cli_path
from domainlm.outputs import to_json
from domainlm.progress import console, err_console

app = typer.Typer(help="Export a mix for other trainers.", no_args_is_help=True)


def _table(summary: dict) -> Table:
    """One row per exported prefix: split, source, prefix, sequences, how its .bin got there."""
    table = Table(
        box=box.SIMPLE_HEAD, title=f"megatron export ({summary['dtype']}, seq_len {summary['seq_len']})"
    )
    for name in ("split", "source", "prefix", "sequences", "bin"):
        table.add_column(name, justify="right" if name == "sequences" else "left")
    for split, items in (("train", summary["train"]), ("valid", summary["valid"])):
        for item in items:
            how = "hard link" if item["linked"] else "copy"
            table.add_row(split, item.get("source") or "", item["prefix"], f"{item['sequences']:,}", how)
    return table


@app.command("megatron")
def megatron(
    mix: Annotated[str, typer.Argument(help="Mix directory (the --out of `domainlm mix`).")],
    out: Annotated[str, out_option("Output directory for the .bin/.idx pairs.")],
    overwrite: Overwrite = False,
    as_json: Json = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing on success.")] = False,
) -> None:
    """Megatron indexed datasets (.bin hard-linked to the mix's shards, .idx written) + data-args files.

    Every training shard becomes one prefix and every source's held-out tokens one validation
    prefix; each packed sequence is one document. OUT/data_args.txt holds --train-data-path and
    --valid-data-path for Megatron-LM; OUT/per_split_data_args.json is for --per-split-data-args-path.
    A phased mix also gets OUT/data_args.PHASE.txt and OUT/per_split_data_args.PHASE.json per phase
    (only that phase's shards): it is trained phase by phase, one Megatron run per phase.
    """
    from domainlm.mix.megatron import DATA_ARGS_NAME, export_megatron

    result = export_megatron(resolve_cli_path(mix), resolve_cli_path(out), overwrite=overwrite)
    summary = result.summary()
    if as_json:
        print(to_json(summary), end="")
        return
    if quiet:
        return
    console.print(_table(summary))
    for name in summary["skipped_valid"]:
        err_console.print(f"warning: source {name!r} has no held-out sequence; it has no validation prefix")
    items = summary["train"] + summary["valid"]
    copies = sum(not item["linked"] for item in items)
    if copies:
        err_console.print(
            f"note: {copies} of {len(items)} .bin files are copies, not hard links: {result.out} is on "
            "another filesystem than the mix, or the filesystem refused hard links",
            markup=False,
        )
    console.print(f"wrote {result.out} (token data: {summary['token_data']})", markup=False, soft_wrap=True)
    if summary.get("phases"):
        _print_phases(summary, result.out)
        return
    console.print(
        f"Megatron-LM: pretrain_gpt.py ... --seq-length {summary['seq_len']} "
        f"$(cat {result.out / DATA_ARGS_NAME}) --data-cache-path DIR",
        markup=False,
        soft_wrap=True,
    )


def _print_phases(summary: dict, out: Path) -> None:
    """A phased mix: one blend (data_args.txt) would interleave the phases; say how to keep the schedule."""
    phases = summary["phases"]
    console.print(
        f"phased mix ({len(phases)} phases): Megatron's blend interleaves its prefixes, so train phase by "
        "phase, one Megatron run per phase in this order, each continuing from the previous run's "
        "checkpoint (--load):",
        markup=False,
        soft_wrap=True,
    )
    for phase in phases:
        console.print(
            f"  {phase['name']}: {phase['sequences']:,} sequences: pretrain_gpt.py ... --seq-length "
            f"{summary['seq_len']} $(cat {out / phase['data_args']}) --data-cache-path DIR",
            markup=False,
            soft_wrap=True,
        )


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="export")
