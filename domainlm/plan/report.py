"""A `Plan` -> the terminal report of `domainlm plan`: sizing, data, compute, shape, memory, recommendation.

Beside the planner, as `tokenizer/report.py` is beside the coverage report; the CLI only prints it.
"""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table

from domainlm.plan.report_memory import megatron_table, rules_of_thumb, strategies_table
from domainlm.plan.result import Plan
from domainlm.units import format_duration, human_count

GB = 1e9


def _n(x: float | None) -> str:
    return "n/a" if x is None else human_count(x)


def _hours(hours: float) -> str:
    return format_duration(hours * 3600)


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
    budget = f"; budget {s.budget_flops:.3g} {s.budget_source}" if s.budget_flops is not None else ""
    rows = [
        ("compute", f"{s.flops:.3g} model FLOPs spent (6N + 12·L·H·T per token){budget}"),
        ("20 tokens/param rule", f"{_n(s.rule_params)} params, {_n(s.rule_tokens)} tokens"),
    ]
    for f in s.fits:  # every published fit, labelled; the one the plan uses is marked
        rows.append(
            (f"{f.name}", f"{_n(f.params)} params, {_n(f.tokens)} tokens" + ("  (used)" if f.used else ""))
        )
    loss = (
        "n/a: above ln(vocab), outside the fit"
        if s.predicted_loss is None
        else f"{s.predicted_loss:.3f} nats/token ({s.loss_fit}; not comparable across tokenizers)"
    )
    rows += [
        ("chosen", f"{_n(s.params)} params on {_n(s.tokens)} tokens ({s.tokens_per_param:.1f} tokens/param)"),
        ("chosen by", s.chosen_by),
        ("predicted loss", loss),
    ]
    return _kv("Sizing (fits at C = 6ND)", rows)


def _data(plan: Plan) -> list[Table]:
    d = plan.data
    if d is None:
        return [_kv("Data", [("unique tokens", "not given (--domain-tokens/--general-tokens or --mix)")])]
    verdict = "short of the compute-optimal data" if (d.short_of_rule or d.short_of_fit) else "enough"
    best = (
        f"none: outside the data-constrained fit ({'; '.join(d.outside_fit)})"
        if d.best_params is None
        else f"{_n(d.best_params)} params on {_n(d.best_tokens)} tokens ({d.best_epochs:.2f} epochs)"
    )
    summary = _kv(
        "Data (Muennighoff et al. 2023)",
        [
            ("unique tokens", f"{_n(d.unique_tokens)}: {verdict}"),
            ("training tokens", f"{_n(d.tokens)} = {d.epochs:.2f} epochs, worth {_n(d.effective_tokens)} unique"),
            ("best for this data", best),
            ("this size needs", f"{_n(d.tokens_needed)} tokens ({_n(d.unique_tokens_needed)} unique at 4 epochs)"),
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
    given = {"mfu": "given", "hfu": "from --hfu", "assumed": "from the assumed HFU"}[c.utilization_given]
    hfu_note = {"mfu": "from --mfu", "hfu": "given", "assumed": "assumed"}[c.utilization_given]
    rows = [
        ("6ND", f"{c.flops_6nd:.3g} FLOPs = {c.pflops_days_6nd:,.4g} petaFLOP/s-days (GPT-3/Chinchilla convention)"),
        ("per token (PaLM)", f"{c.flops_per_token:.3g} FLOPs = 6N + 12·L·H·T (attention {c.attention_share:.1%})"),
        ("model FLOPs", f"{c.flops:.3g} FLOPs = {c.pflops_days:,.4g} petaFLOP/s-days (attention included)"),
        ("recompute", f"{c.recompute}: hardware {c.hardware_flops_per_token:.3g} FLOPs/token, {c.hardware_flops:.3g} in all"),
    ]  # fmt: skip
    if c.peak_flops:
        rows += [
            ("hardware", f"{c.num_gpus or '?'} x {c.gpu_type}, {c.peak_flops / 1e12:,.1f} TFLOP/s dense {plan.precision}"),
            ("MFU / HFU", f"{c.mfu:.1%} ({given}) / {c.hfu:.1%} ({hfu_note})"),
            ("GPU-hours", f"{c.gpu_hours:,.0f} ({c.gpu_years:,.1f} GPU-years)"),
            ("wall clock", _hours(c.days * 24) if c.days else "n/a (give --gpus)"),
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
            *(
                [
                    (
                        "shape's own count",
                        f"{s.shape_params:,} (illustrates --params; FLOPs and memory use the exact N)",
                    )
                ]
                if s.pinned_params is not None
                else []
            ),
        ],
    )


def _memory(plan: Plan) -> Table:
    rec = plan.recommendation
    cap = f"{plan.gpu_memory_bytes / GB:.1f} GB GPU" if plan.gpu_memory_bytes else "no --gpu-type"
    mb = plan.memory[0].micro_batch
    ckpt = "on" if rec and rec.activation_checkpointing else "off"
    table = Table(
        title=f"Memory per GPU, GB ({cap}; {plan.precision}; micro-batch {mb}; checkpointing {ckpt}; "
        "DeepSpeed: grads incl. its fp32 partition, buffers incl. ZeRO-3's gathered module)",
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
            m.strategy + (" *" if chosen else ""), _gb(m.weights), _gb(m.grads + m.grads_fp32), _gb(m.optimizer),
            _gb(m.activations), _gb(m.working + m.gathered), _gb(m.total), fits,
            str(m.max_micro_batch) if plan.gpu_memory_bytes else "-", _gb(m.cpu_per_gpu),
        )  # fmt: skip
    return table


def _recommendation(plan: Plan) -> Table:
    r = plan.recommendation
    if r is None:
        if plan.no_fit is not None:
            return _kv(
                "Recommendation", [("nothing fits", f"{plan.no_fit.constraint}: {plan.no_fit.message}")]
            )
        return _kv("Recommendation", [("strategy", "give --gpu-type")])
    rows = [
        ("strategy", f"{r.strategy} (ZeRO stage {r.zero_stage}, offload {r.offload})"),
        ("activation checkpointing", f"{'on' if r.activation_checkpointing else 'off'} (recompute: {r.recompute})"),
        ("micro-batch", f"{r.micro_batch} sequences (max that fits {r.max_micro_batch}; useful >= {r.useful_micro_batch})"),
        ("global batch", f"{r.global_batch_sequences:,} sequences = {_n(r.global_batch_tokens)} tokens "
                         f"({r.micro_batch} x {r.gradient_accumulation} accumulation x {r.num_gpus} GPUs)"),
        ("steps", f"{r.steps:,}"),
        ("memory per GPU", f"{_gb(r.memory_per_gpu)} GB" + (f", CPU {_gb(r.cpu_per_node)} GB per node" if r.cpu_per_node else "")),
        ("host RAM per node", f"{_gb(r.host_per_node)} GB (fp32 model load or offloaded states, x1.5; --host-memory {_gb(plan.host_memory_bytes or 0)} GB)"),
    ]  # fmt: skip
    if r.step_seconds:
        rows.append(("step time / total", f"{r.step_seconds:.2f} s / {_hours(r.total_hours)}"))
    rows.append(("rules of thumb", rules_of_thumb(plan)))
    return _kv("Recommendation", rows)


def plan_tables(plan: Plan) -> list[Table]:
    """The plan's sections in reading order: sizing, data, compute, shape, memory, recommendation."""
    megatron = megatron_table(plan)
    return [
        _sizing(plan), *_data(plan), _compute(plan), _shape(plan), _memory(plan), strategies_table(plan),
        _recommendation(plan), *([megatron] if megatron is not None else []),
    ]  # fmt: skip


def print_plan(plan: Plan, console: Console | None = None) -> None:
    """Every table, then the notes, on `console` (default: stdout)."""
    out = console or Console()
    if not out.is_terminal:
        out = Console(
            width=110, file=out.file
        )  # the memory table needs ~100 columns; piped, rich squeezes to 80
    for flag in plan.flags:
        out.print(f"WARNING: {flag}")
    for part in plan_tables(plan):
        out.print(part)
        out.print()
    for note in plan.notes:
        out.print(f"note: {note}")
