"""`domainlm plan`: budget / size / tokens / data / hardware flags -> a printed plan (or --json) and a recipe."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from domainlm.config import parse_count
from domainlm.errors import ConfigError
from domainlm.plan.inputs import PlanInputs, ShapeSpec, two_sources
from domainlm.plan.planner import Plan, human, make_plan
from domainlm.progress import console

GB = 1e9


def _count(value: str | None, flag: str) -> float | None:
    """'7B' / '5.76e23' / '1.4T' -> a number; negatives are rejected with the flag's name."""
    if value is None:
        return None
    text = value.strip()
    if text.startswith("-"):
        raise ConfigError(f"{flag} must be > 0, got {value}")
    return float(parse_count(text, flag))


def _n(x: float | None) -> str:
    return "n/a" if x is None else human(x)


def _duration(hours: float) -> str:
    return f"{hours / 24:,.1f} days" if hours >= 48 else f"{hours:,.1f} hours"


def _gb(x: float) -> str:
    return f"{x / GB:,.1f}"


def _kv(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, value)
    return table


def _sizing(plan: Plan) -> Table:
    s = plan.sizing
    return _kv(
        "Sizing (Chinchilla, C = 6ND)",
        [
            ("compute", f"{s.flops:.3g} FLOPs"),
            ("20 tokens/param rule", f"{_n(s.rule_params)} params, {_n(s.rule_tokens)} tokens"),
            (f"{s.fit} fit", f"{_n(s.fit_params)} params, {_n(s.fit_tokens)} tokens  (used)"),
            (f"{s.other_fit} fit", f"{_n(s.other_fit_params)} params, {_n(s.other_fit_tokens)} tokens"),
            (
                "chosen",
                f"{_n(s.params)} params on {_n(s.tokens)} tokens ({s.tokens_per_param:.1f} tokens/param)",
            ),
            ("chosen by", s.chosen_by),
            (
                "predicted loss",
                f"{s.predicted_loss:.3f} nats/token ({s.fit}; not comparable across tokenizers)",
            ),
        ],
    )


def _data(plan: Plan) -> list[Table]:
    d = plan.data
    if d is None:
        return [_kv("Data", [("unique tokens", "not given (--domain-tokens/--general-tokens or --mix)")])]
    verdict = "short of the compute-optimal data" if (d.short_of_rule or d.short_of_fit) else "enough"
    summary = _kv(
        "Data (Muennighoff et al. 2023)",
        [
            ("unique tokens", f"{_n(d.unique_tokens)}: {verdict}"),
            ("training tokens", f"{_n(d.tokens)} = {d.epochs:.2f} epochs, worth {_n(d.effective_tokens)} unique"),
            ("best for this data", f"{_n(d.best_params)} params on {_n(d.best_tokens)} tokens ({d.best_epochs:.2f} epochs)"),
            ("one epoch at this compute", f"{_n(d.one_epoch_params)} params"),
        ],
    )  # fmt: skip
    table = Table(title="Sources", title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("source", "unique", "ratio", "tokens", "epochs", "effective"):
        table.add_column(col, justify="left" if col == "source" else "right")
    for s in d.sources:
        table.add_row(
            s.name,
            _n(s.available_tokens),
            f"{s.ratio:.1%}",
            _n(s.tokens),
            f"{s.epochs:.2f}",
            _n(s.effective_tokens),
        )
    return [summary, table]


def _compute(plan: Plan) -> Table:
    c = plan.compute
    mfu = f"{c.mfu:.0%}" + (" (assumed)" if c.mfu_assumed else "")
    rows = [
        ("6ND", f"{c.flops_6nd:.3g} FLOPs"),
        (
            "per token (PaLM)",
            f"{c.flops_per_token:.3g} FLOPs = 6N + 12·L·H·T (attention {c.attention_share:.1%})",
        ),
        ("total", f"{c.flops:.3g} FLOPs = {c.pflops_days:,.4g} petaFLOP/s-days"),
    ]
    if c.peak_flops:
        rows += [
            ("hardware", f"{c.num_gpus or '?'} x {c.gpu_type}, {c.peak_flops / 1e12:,.1f} TFLOP/s dense {plan.precision}"),
            ("MFU", mfu),
            ("GPU-hours", f"{c.gpu_hours:,.0f}"),
            ("wall clock", _duration(c.days * 24) if c.days else "n/a (give --gpus)"),
        ]  # fmt: skip
    if c.cost is not None:
        rows.append(("cost", f"${c.cost:,.0f}"))
    return _kv("Compute and time", rows)


def _shape(plan: Plan) -> Table:
    s = plan.shape
    return _kv(
        f"Shape ({s.arch})",
        [
            ("layers x hidden", f"{s.num_layers} x {s.hidden_size}"),
            ("heads / kv heads / head dim", f"{s.num_heads} / {s.num_kv_heads} / {s.head_dim}"),
            ("ffn", str(s.ffn_size)),
            ("vocab / seq len", f"{s.vocab_size:,} / {plan.seq_len:,}"),
            ("tied embeddings", "yes" if s.tie_embeddings else "no"),
            ("parameters (exact)", f"{s.num_params:,} ({s.matmul_params:,} in matmuls)"),
        ],
    )


def _memory(plan: Plan) -> Table:
    rec = plan.recommendation
    cap = f"{plan.gpu_memory_bytes / GB:.1f} GB GPU" if plan.gpu_memory_bytes else "no --gpu-type"
    mb = plan.memory[0].micro_batch
    ckpt = "on" if rec and rec.activation_checkpointing else "off"
    table = Table(
        title=f"Memory per GPU, GB ({cap}; {plan.precision}; micro-batch {mb}; checkpointing {ckpt})",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    for col in (
        "strategy",
        "weights",
        "grads",
        "optim",
        "activ",
        "buffers",
        "total",
        "fits",
        "max mb",
        "CPU/GPU",
    ):
        table.add_column(col, justify="left" if col == "strategy" else "right")
    for m in plan.memory:
        fits = ("yes" if m.fits else "no") if plan.gpu_memory_bytes else "-"
        chosen = rec is not None and m.strategy == rec.strategy
        table.add_row(
            m.strategy + (" *" if chosen else ""), _gb(m.weights), _gb(m.grads), _gb(m.optimizer),
            _gb(m.activations), _gb(m.working), _gb(m.total), fits,
            str(m.max_micro_batch) if plan.gpu_memory_bytes else "-", _gb(m.cpu_per_gpu),
        )  # fmt: skip
    return table


def _recommendation(plan: Plan) -> Table:
    r = plan.recommendation
    if r is None:
        why = "give --gpu-type" if not plan.gpu_memory_bytes else (
            "nothing fits: add GPUs, shrink the model, allow --offload, or use tensor/pipeline parallelism"
        )  # fmt: skip
        return _kv("Recommendation", [("strategy", why)])
    t = plan.teaching
    rows = [
        ("strategy", f"{r.strategy} (ZeRO stage {r.zero_stage}, offload {r.offload})"),
        ("activation checkpointing", "on" if r.activation_checkpointing else "off"),
        ("micro-batch", f"{r.micro_batch} sequences (max that fits {r.max_micro_batch}; useful >= {r.useful_micro_batch})"),
        ("global batch", f"{r.global_batch_sequences:,} sequences = {_n(r.global_batch_tokens)} tokens "
                         f"({r.micro_batch} x {r.gradient_accumulation} accumulation x {r.num_gpus} GPUs)"),
        ("steps", f"{r.steps:,}"),
        ("memory per GPU", f"{_gb(r.memory_per_gpu)} GB" + (f", CPU {_gb(r.cpu_per_node)} GB per node" if r.cpu_per_node else "")),
    ]  # fmt: skip
    if r.step_seconds:
        rows.append(("step time / total", f"{r.step_seconds:.2f} s / {_duration(r.total_hours)}"))
    rows.append(
        (
            "rules of thumb",
            f"1B params = 4 GB fp32 weights; this model {_gb(t['weights_fp32_bytes'])} GB fp32, "
            f"{_gb(t['weights_bf16_bytes'])} GB bf16; Adam mixed precision ~16-24 bytes/param = "
            f"{_gb(t['train_states_bytes'])}-{_gb(t['train_upper_bytes'])} GB of model states",
        )
    )
    return _kv("Recommendation", rows)


def print_plan(plan: Plan) -> None:
    # The memory table needs ~100 columns; when piped, rich would squeeze it to 80.
    out = console if console.is_terminal else Console(width=110)
    for part in [
        _sizing(plan),
        *_data(plan),
        _compute(plan),
        _shape(plan),
        _memory(plan),
        _recommendation(plan),
    ]:
        out.print(part)
        out.print()
    for note in plan.notes:
        out.print(f"note: {note}")


def register(app: typer.Typer) -> None:
    @app.command("plan")
    def plan_command(
        flops: str = typer.Option(None, "--flops", help="compute budget in FLOPs, e.g. 5.76e23"),
        gpus: int = typer.Option(None, "--gpus", help="total GPUs"),
        gpu_type: str = typer.Option(
            None, "--gpu-type", help="a100-40gb, a100-80gb, h100-sxm, h100-pcie, h200, l4, v100-32gb ..."
        ),
        hours: float = typer.Option(None, "--hours", help="wall-clock hours available"),
        days: float = typer.Option(None, "--days", help="or days available"),
        mfu: float = typer.Option(
            None, "--mfu", help="expected model FLOPs utilization in (0, 1]; default 0.4"
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
        offload: str = typer.Option(
            "none", "--offload", help="most CPU offload to consider: none, optimizer, params"
        ),
        attention: str = typer.Option("flash", "--attention", help="flash (SDPA, no stored scores) or eager"),
        price: float = typer.Option(None, "--price-per-gpu-hour", help="USD per GPU-hour, for the cost"),
        fit: str = typer.Option(
            "besiroglu2024", "--fit", help="scaling-law constants: besiroglu2024 or hoffmann2022"
        ),
        gpu_catalog: Annotated[
            Path | None, typer.Option("--gpu-catalog", help="YAML adding GPUs to the catalog")
        ] = None,
        as_json: bool = typer.Option(False, "--json", help="print the plan as JSON only"),
        write_recipe: Annotated[
            Path | None, typer.Option("--write-recipe", help="write a `domainlm pretrain` recipe YAML")
        ] = None,
        overwrite: bool = typer.Option(False, "--overwrite", help="let --write-recipe replace a file"),
    ) -> None:
        """Size the model and tokens against a compute budget; time, cost and memory per GPU."""
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
            offload=offload,
            flash_attention=attention == "flash",
            price_per_gpu_hour=price,
            fit=fit,
            gpu_catalog=str(gpu_catalog) if gpu_catalog else None,
            mix_dir=str(mix) if mix else None,
        )  # fmt: skip
        plan = make_plan(inputs)
        if write_recipe is not None:
            from domainlm.plan.recipe import write_recipe as write

            write(plan, mix, write_recipe, nodes, overwrite)
        if as_json:
            print(json.dumps(plan.to_dict(), indent=2))
        else:
            print_plan(plan)
            if write_recipe is not None:
                console.print(f"recipe written to {write_recipe}")
