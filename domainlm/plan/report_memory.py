"""A `Plan` -> the memory tables beside the main report: strategies in ZeRO-paper / FSDP / host terms,
the rules of thumb, and the Megatron-LM layout (a separate path from DeepSpeed's)."""

from __future__ import annotations

from rich import box
from rich.table import Table

from domainlm.plan.result import Plan

GB = 1e9


def _gb(x: float) -> str:
    return f"{x / GB:,.1f}"


def strategies_table(plan: Plan) -> Table:
    """Per strategy: the FSDP name, the ZeRO paper's model states, and host RAM per node."""
    host = plan.host_memory_bytes
    zero3 = next(m for m in plan.memory if m.strategy == "zero3")
    grouped = zero3.fsdp == "HYBRID_SHARD"
    where = (
        f"states sharded over groups of {zero3.shard_group_size} GPUs, replicas across groups; "
        if grouped
        else ""
    )
    table = Table(
        title=f"Strategies ({where}host RAM per node against --host-memory {_gb(host or 0)} GB; FSDP "
        "none = no equivalent)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    for col in (
        "strategy",
        "FSDP equivalent",
        "ZeRO paper states",
        "DeepSpeed states",
        "host/node",
        "host fits",
    ):
        table.add_column(col, justify="left" if col in ("strategy", "FSDP equivalent") else "right")
    for m in plan.memory:
        deepspeed = m.weights + m.grads + m.grads_fp32 + m.optimizer + m.gathered + m.cpu_per_gpu
        fits = "-" if m.host_fits is None else ("yes" if m.host_fits else "no")
        table.add_row(
            m.strategy, m.fsdp, _gb(m.model_states_paper), _gb(deepspeed), _gb(m.host_per_node), fits
        )
    return table


def rules_of_thumb(plan: Plan) -> str:
    """'1B params = 4 GB in fp32' and '~16-20x to train', exactly, for this model."""
    t = plan.teaching
    paper, deepspeed = t["train_states_bytes_per_param"], t["train_upper_bytes_per_param"]
    k = paper - (8 if plan.precision == "fp32" else 4)  # the optimizer's K: paper minus weights and grads
    return (
        f"to hold: {_gb(t['weights_fp32_bytes'])} GB fp32, {_gb(t['weights_bf16_bytes'])} GB bf16, "
        f"{_gb(t['weights_int8_bytes'])} GB int8 (4 / 2 / 1 bytes/param); to train "
        f"({plan.precision}, optimizer K = {k:g}): {paper:g} bytes/param (ZeRO paper) = {_gb(t['train_states_bytes'])} GB, "
        f"{deepspeed:g} with DeepSpeed's fp32 gradients = {_gb(t['train_upper_bytes'])} GB, before sharding"
    )


def megatron_table(plan: Plan) -> Table | None:
    """The Megatron-LM layout's memory per GPU and pipeline bubble (parallel.py), when asked for."""
    m = plan.megatron
    if m is None:
        return None
    table = Table(
        title="Megatron-LM layout (tensor/pipeline/sequence parallel; not the DeepSpeed plan above)",
        title_justify="left",
        show_header=False,
        box=None,
        pad_edge=False,
    )
    table.add_column(style="bold")
    table.add_column()
    cap = (
        f" of {_gb(plan.gpu_memory_bytes)} GB: {'fits' if m.fits else 'does not fit'}"
        if m.fits is not None
        else ""
    )
    sp = ", sequence parallel" if m.sequence_parallel else ""
    rows = [
        ("layout", f"t={m.tensor} x p={m.pipeline} x d={m.data}{sp}, recompute {m.recompute}"),
        ("params per GPU", f"{m.params_per_gpu / 1e9:,.2f}B"),
        ("model states", f"{_gb(m.model_states)} GB (distributed optimizer: 6 + 12/d bytes/param)"),
        ("activations", f"{_gb(m.activations)} GB (first stage, Korthikanti et al. 2022)"),
        ("total per GPU", f"{_gb(m.total)} GB{cap}"),
        (
            "pipeline bubble",
            f"{m.bubble_fraction:.1%} of the step ((p-1)/m, m = {m.micro_batches} micro-batches; Narayanan et al. 2021)",
        ),
    ]
    for key, value in rows:
        table.add_row(key, value)
    return table
