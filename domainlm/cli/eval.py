"""`domainlm eval`: local HF models x per-domain held-out text -> report.json, report.md, plot, table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from domainlm.cli.options import Json, Overwrite, Quiet, out_option
from domainlm.outputs import check_output_dir, to_json
from domainlm.progress import console, err_console, make_progress


def eval_command(
    model: Annotated[
        list[str], typer.Option("--model", help="Local HF model dir, or NAME=DIR; repeat to compare models.")
    ],
    data: Annotated[
        list[str],
        typer.Option(
            "--data",
            help="A mix dir (its val/<source>.jsonl.gz, one domain each), NAME=PATH, or a shipped "
            "sample: finance, legal, medical, general. Repeatable.",
        ),
    ],
    out: Annotated[Path, out_option("Output dir: report.json, report.md, bits_per_byte.png.")],
    batch_size: Annotated[int, typer.Option("--batch-size", help="Windows per forward pass.")] = 8,
    max_length: Annotated[
        int | None,
        typer.Option("--max-length", help="Tokens per window (default: the model's context, at most 2048)."),
    ] = None,
    stride: Annotated[
        int | None,
        typer.Option(
            "--stride",
            help="Causal models: new tokens scored per window; each keeps >= max_length - stride tokens "
            "of context (default: max_length // 2).",
        ),
    ] = None,
    max_docs: Annotated[
        int | None, typer.Option("--max-docs", help="Use the first N documents per domain.")
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    dtype: Annotated[
        str, typer.Option("--dtype", help="auto (float32 on CPU, bf16 on GPU), float32, bfloat16, float16.")
    ] = "auto",
    seed: Annotated[int, typer.Option("--seed", help="Masking seed for masked and seq2seq models.")] = 0,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
    json_out: Json = False,
) -> None:
    """Per-domain loss, perplexity and bits per byte of local models (causal, masked or seq2seq).

    Bits per byte is the comparison metric: each model tokenizes the same text with its own
    tokenizer and its total NLL is divided by the text's UTF-8 bytes.
    """
    from domainlm.eval.data import load_domains, resolve_data_specs
    from domainlm.eval.evaluate import EvalSettings, evaluate
    from domainlm.eval.models import parse_model_specs, quiet_transformers
    from domainlm.eval.report import rich_tables, write_report

    settings = EvalSettings(batch_size=batch_size, max_length=max_length, stride=stride, device=device,
                            dtype=dtype, seed=seed)  # fmt: skip
    settings.validate()
    specs = parse_model_specs(model)
    pairs = resolve_data_specs(data)  # fail on a bad --data before reading anything
    # Refuse a bad --out before loading and scoring models (write_report checks again under its lock).
    check_output_dir(
        out, overwrite=overwrite, inputs=[*(s.path for s in specs), *(path for _, path in pairs)]
    )
    domains = load_domains(data, max_docs)
    quiet_transformers()
    with make_progress(quiet or json_out) as progress:
        report = evaluate(specs, domains, settings, progress)
    write_report(report, out, overwrite=overwrite)
    if json_out:
        print(to_json(report.as_dict()), end="")
        return
    for table in rich_tables(report):
        console.print(table)
    err_console.print(f"report: {out / 'report.md'} (plot: {out / 'bits_per_byte.png'})")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
