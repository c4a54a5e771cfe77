"""`domainlm generate`: a local causal or seq2seq model + prompts -> continuations (greedy or sampled)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from domainlm.cli.options import Json
from domainlm.outputs import to_json
from domainlm.progress import console


def generate_command(
    model: Annotated[Path, typer.Option("--model", help="Local HF model dir (causal or seq2seq).")],
    prompt: Annotated[
        list[str],
        typer.Option("--prompt", "-p", help="Prompt text; repeatable. '' starts a document from scratch."),
    ],
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", help="Tokens to generate at most.")] = 64,
    greedy: Annotated[
        bool, typer.Option("--greedy", help="Argmax decoding (same as --temperature 0).")
    ] = False,
    temperature: Annotated[
        float, typer.Option("--temperature", help="Sampling temperature; 0 is greedy.")
    ] = 1.0,
    top_k: Annotated[int, typer.Option("--top-k", help="Sample among the k likeliest tokens; 0 is off.")] = 0,
    top_p: Annotated[float, typer.Option("--top-p", help="Nucleus sampling mass in (0, 1]; 1 is off.")] = 1.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed; prompt i uses seed + i.")] = 0,
    num_samples: Annotated[int, typer.Option("--num-samples", "-n", help="Samples per prompt.")] = 1,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    dtype: Annotated[str, typer.Option("--dtype", help="auto, float32, bfloat16 or float16.")] = "auto",
    json_out: Json = False,
) -> None:
    """Continue prompts with a local model through transformers' generate."""
    from domainlm.eval.generate import GenerationSettings, generate
    from domainlm.eval.models import quiet_transformers

    settings = GenerationSettings(
        max_new_tokens=max_new_tokens, greedy=greedy, temperature=temperature, top_k=top_k, top_p=top_p,
        seed=seed, num_samples=num_samples, device=device, dtype=dtype,
    )  # fmt: skip
    settings.validate()
    quiet_transformers()
    samples = generate(model, prompt, settings)
    if json_out:
        print(to_json([asdict(s) for s in samples]), end="")
        return
    for s in samples:
        label = f"[dim]sample {s.sample + 1}/{num_samples}[/] " if num_samples > 1 else ""
        console.print(f"{label}[bold]{escape(s.prompt)}[/]", end="", highlight=False)
        console.print(s.text, markup=False, highlight=False)
        console.print()


def register(app: typer.Typer) -> None:
    app.command("generate")(generate_command)
