"""`domainlm plan`: budget / size / tokens / data / hardware flags -> a printed plan (or --json) and a recipe."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from domainlm.cli.options import Json, Quiet
from domainlm.config import parse_count
from domainlm.errors import ConfigError
from domainlm.plan.host import parse_host_memory
from domainlm.plan.inputs import PlanInputs, ShapeSpec, two_sources
from domainlm.plan.planner import make_plan
from domainlm.plan.report import print_plan
from domainlm.progress import console, err_console

NOTHING_FITS_EXIT = 3  # documented in the command's help: no strategy fits the given GPUs


def _count(value: str | None, flag: str) -> float | None:
    """'7B' / '5.76e23' / '1.4T' -> a number; negatives are rejected with the flag's name."""
    if value is None:
        return None
    text = value.strip()
    if text.startswith("-"):
        raise ConfigError(f"{flag} must be > 0, got {value}")
    return float(parse_count(text, flag))


def _recipe_can_train(
    optimizer: str,
    shard_group_size: int | None,
    zero_init: bool,
    tensor_parallel: int | None,
    pipeline_parallel: int | None,
) -> None:
    """`domainlm pretrain` trains with AdamW, shards over all GPUs and has no tensor/pipeline parallelism: a
    recipe planned otherwise would not be what it trains. (--zero-init is what it does at ZeRO-3:
    deepspeed.zero_init, on by default, constructs the model sharded.)"""
    given = {
        f"--optimizer {optimizer}": optimizer != "adamw",
        "--shard-group-size": shard_group_size is not None,
        "--tensor-parallel/--pipeline-parallel": tensor_parallel is not None or pipeline_parallel is not None,
    }
    unsupported = [flag for flag, used in given.items() if used]
    if unsupported:
        raise ConfigError(
            f"--write-recipe with {', '.join(unsupported)}: domainlm pretrain trains with AdamW, ZeRO over all "
            "GPUs and no tensor/pipeline parallelism; drop them to write a recipe (or plan without "
            "--write-recipe)"
        )


def plan_command(
    flops: str = typer.Option(None, "--flops", help="compute budget in FLOPs, e.g. 5.76e23"),
    gpus: int = typer.Option(None, "--gpus", help="total GPUs"),
    gpu_type: str = typer.Option(
        None, "--gpu-type", help="a100-40gb, a100-80gb, h100-sxm, h100-pcie, h200, l4, v100-32gb ..."
    ),
    hours: float = typer.Option(None, "--hours", help="wall-clock hours available"),
    days: float = typer.Option(None, "--days", help="or days available"),
    mfu: float = typer.Option(
        None, "--mfu", help="expected model FLOPs utilization in (0, 1] (recompute's cost inside it)"
    ),
    hfu: float = typer.Option(
        None, "--hfu", help="or hardware FLOPs utilization (recompute counted); default HFU 0.4"
    ),
    params: str = typer.Option(None, "--params", help="model size, e.g. 7B"),
    arch: str = typer.Option("llama", "--arch", help="llama, gpt2, neox, bloom (counting rules)"),
    layers: int = typer.Option(None, "--layers", help="explicit shape: layers"),
    hidden: int = typer.Option(None, "--hidden", help="explicit shape: hidden size"),
    heads: int = typer.Option(None, "--heads", help="explicit shape: attention heads"),
    kv_heads: int = typer.Option(None, "--kv-heads", help="explicit shape: KV heads (llama GQA)"),
    ffn: int = typer.Option(None, "--ffn", help="explicit shape: MLP width"),
    tie: bool = typer.Option(
        None, "--tie-embeddings/--untie-embeddings", help="explicit shape: tied LM head"
    ),
    vocab: int = typer.Option(None, "--vocab", help="vocabulary size; default the mix's, else 32000"),
    tokens: str = typer.Option(None, "--tokens", help="training tokens, e.g. 1.4T"),
    domain_tokens: str = typer.Option(None, "--domain-tokens", help="unique domain tokens available"),
    general_tokens: str = typer.Option(None, "--general-tokens", help="unique general tokens available"),
    domain_ratio: float = typer.Option(
        None, "--domain-ratio", help="share of training tokens from the domain, e.g. 0.51"
    ),
    mix: Annotated[
        Path | None, typer.Option("--mix", help="a `domainlm mix` output dir: unique tokens per source")
    ] = None,
    seq_len: int = typer.Option(None, "--seq-len", help="sequence length; default the mix's, else 2048"),
    precision: str = typer.Option("bf16", "--precision", help="bf16, fp16 (mixed) or fp32"),
    nodes: int = typer.Option(1, "--nodes", help="nodes the GPUs are spread over"),
    micro_batch: int = typer.Option(
        None, "--micro-batch", help="sequences per GPU per step; default the largest useful"
    ),
    global_batch_tokens: str = typer.Option(
        None, "--global-batch-tokens", help="tokens per optimizer step; default ~4M"
    ),
    checkpointing: bool = typer.Option(
        None, "--activation-checkpointing/--no-activation-checkpointing", help="default: only if needed"
    ),
    recompute: str = typer.Option(
        None,
        "--recompute",
        help="none, selective (attention core, Korthikanti 2022) or full; default as needed",
    ),
    offload: str = typer.Option(
        "none", "--offload", help="most CPU offload to consider: none, optimizer, params"
    ),
    attention: str = typer.Option("flash", "--attention", help="flash (SDPA, no stored scores) or eager"),
    optimizer: str = typer.Option(
        "adamw", "--optimizer", help="adamw (12 B/param mixed), adamw-8bit (6.03), sgd (momentum, 8)"
    ),
    shard_group_size: int = typer.Option(
        None,
        "--shard-group-size",
        help="shard ZeRO/FSDP states over groups of this many GPUs (MiCS, HYBRID_SHARD)",
    ),
    host_memory: str = typer.Option(
        "1TiB", "--host-memory", help="host RAM per node, e.g. 1TiB (default, DGX A100), 2TiB (DGX H100)"
    ),
    zero_init: bool = typer.Option(
        True,
        "--zero-init/--no-zero-init",
        help="ZeRO-3 sharded construction (zero.Init), as pretrain does by default (deepspeed.zero_init): "
        "load RAM per rank; --no-zero-init for a run that builds the whole model on every rank",
    ),
    tensor_parallel: int = typer.Option(
        None, "--tensor-parallel", help="Megatron-LM layout: tensor-parallel size t (separate section)"
    ),
    pipeline_parallel: int = typer.Option(None, "--pipeline-parallel", help="Megatron-LM layout: stages p"),
    sequence_parallel: bool = typer.Option(
        False, "--sequence-parallel", help="Megatron-LM layout: sequence parallelism (needs t > 1)"
    ),
    price: float = typer.Option(None, "--price-per-gpu-hour", help="USD per GPU-hour, for the cost"),
    fit: str = typer.Option(
        "besiroglu2024", "--fit", help="scaling-law constants: besiroglu2024 or hoffmann2022"
    ),
    gpu_catalog: Annotated[
        Path | None, typer.Option("--gpu-catalog", help="YAML adding GPUs to the catalog")
    ] = None,
    as_json: Json = False,
    quiet: Quiet = False,
    write_recipe: Annotated[
        Path | None, typer.Option("--write-recipe", help="write a `domainlm pretrain` recipe YAML")
    ] = None,
    overwrite: bool = typer.Option(False, "--overwrite", help="let --write-recipe replace a file"),
    from_run: Annotated[
        Path | None,
        typer.Option("--from-run", help="a `domainlm pretrain` run dir: achieved MFU/HFU and time to finish"),
    ] = None,
) -> None:
    """Size the model and tokens against a compute budget; time, cost and memory per GPU.

    Exit status: 0 a plan; 2 an input error; 3 nothing fits the given GPUs (the failing constraint,
    micro-batch, memory or host RAM, is printed and is `reason` in --json).
    """
    if from_run is not None:
        given = {"--flops": flops, "--params": params, "--tokens": tokens, "--mix": mix, "--gpus": gpus}
        extra = [flag for flag, value in given.items() if value is not None]
        if extra:
            raise ConfigError(f"--from-run reads the run's own numbers; drop {', '.join(extra)}")
        from domainlm.cli.plan_run import report_run  # reads the run dir through pretrain's readers

        report_run(from_run, gpu_type, str(gpu_catalog) if gpu_catalog else None, as_json)
        return
    if hours is not None and days is not None:
        raise ConfigError("give --hours or --days, not both")
    if attention not in ("flash", "eager"):
        raise ConfigError(f"--attention {attention!r}: use flash or eager")
    shape_flags = [layers, hidden, heads]
    if any(v is not None for v in shape_flags) and not all(v is not None for v in shape_flags):
        raise ConfigError("an explicit shape needs all of --layers, --hidden and --heads")
    shape = ShapeSpec(layers, hidden, heads, kv_heads, ffn, tie) if layers is not None else None
    inputs = PlanInputs(
        flops=_count(flops, "--flops"),
        num_gpus=gpus,
        gpu_type=gpu_type,
        hours=days * 24.0 if days is not None else hours,
        mfu=mfu,
        hfu=hfu,
        params=_count(params, "--params"),
        shape=shape,
        arch=arch,
        vocab_size=vocab,
        tokens=_count(tokens, "--tokens"),
        sources=two_sources(_count(domain_tokens, "--domain-tokens"), _count(general_tokens, "--general-tokens"), domain_ratio),
        seq_len=seq_len,
        precision=precision,
        nodes=nodes,
        micro_batch=micro_batch,
        global_batch_tokens=int(_count(global_batch_tokens, "--global-batch-tokens") or 0) or None,
        activation_checkpointing=checkpointing,
        recompute=recompute,
        offload=offload,
        flash_attention=attention == "flash",
        price_per_gpu_hour=price,
        fit=fit,
        gpu_catalog=str(gpu_catalog) if gpu_catalog else None,
        mix_dir=str(mix) if mix else None,
        optimizer=optimizer,
        shard_group_size=shard_group_size,
        host_memory_bytes=parse_host_memory(host_memory),
        zero_init=zero_init,
        tensor_parallel=tensor_parallel,
        pipeline_parallel=pipeline_parallel,
        sequence_parallel=sequence_parallel,
    )  # fmt: skip
    if write_recipe is not None:
        _recipe_can_train(optimizer, shard_group_size, zero_init, tensor_parallel, pipeline_parallel)
    plan = make_plan(inputs)
    if write_recipe is not None:
        from domainlm.plan.recipe import write_recipe as write
        from domainlm.pretrain.config import recipe_from_dict  # the recipe schema (contract D)

        write(plan, mix, write_recipe, nodes, overwrite, validate=recipe_from_dict)
    if as_json:
        print(json.dumps(plan.to_dict(), indent=2))
    elif not quiet:
        print_plan(plan, console)
    if write_recipe is not None and not as_json:
        err_console.print(f"recipe written to {write_recipe}")
    if plan.no_fit is not None:
        err_console.print(f"nothing fits ({plan.no_fit.constraint}): {plan.no_fit.message}")
        raise typer.Exit(NOTHING_FITS_EXIT)


def register(app: typer.Typer) -> None:
    app.command("plan")(plan_command)
