"""Shape + GPUs + tokens -> the memory table and the recommended strategy, micro-batch and batch schedule.

"Least sharding that fits with a useful micro-batch": strategies are tried from plain DDP to ZeRO-3
with parameter offload (memory.STRATEGIES order, capped by --offload); the first whose memory leaves
room for a useful micro-batch wins. Less sharding means less communication: ZeRO-3 all-gathers
every parameter twice per step (1.5x DDP's traffic), offload moves the optimizer step to the CPU.
Activation checkpointing (full recompute: the forward again, 2N + 4·L·H·T FLOPs per token, a third
more) is turned on only when nothing fits without it; --recompute selective recomputes only the
attention core (Korthikanti et al. 2022), which stores no s x s scores, like flash attention.
When nothing fits, `NoFit` says which constraint failed: the user's micro-batch, GPU memory, or host RAM.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from domainlm.plan import flops as fl
from domainlm.plan.hardware import GpuSpec
from domainlm.plan.host import host_memory, host_note
from domainlm.plan.inputs import PlanInputs
from domainlm.plan.memory import STRATEGIES, MemoryEstimate, Strategy, allowed_strategies, estimate_memory
from domainlm.plan.shapes import ModelShape

# A micro-batch of >= 8192 tokens keeps the matmuls large enough to run near peak (4 sequences of
# 2048); below that, kernel launch and communication overheads dominate.
USEFUL_MICRO_BATCH_TOKENS = 8192
MAX_MICRO_BATCH_TOKENS = 32768  # beyond this a larger micro-batch buys no throughput, only memory
DEFAULT_GLOBAL_BATCH_TOKENS = 4 * 1024 * 1024  # ~4M tokens: Llama 1/2; BloombergGPT ran 2-4M
MIN_STEPS = 2000  # small runs get smaller batches so they still take enough optimizer steps


@dataclass(frozen=True)
class Recommendation:
    """The chosen strategy and batch schedule; times are at the plan's MFU."""

    strategy: str
    zero_stage: int
    offload: str
    activation_checkpointing: bool
    recompute: str  # none, selective, full (= activation_checkpointing)
    num_gpus: int
    micro_batch: int
    max_micro_batch: int
    useful_micro_batch: int
    fits_useful: bool  # False = only a smaller micro-batch fits anywhere
    gradient_accumulation: int
    global_batch_sequences: int
    global_batch_tokens: int
    steps: int
    memory_per_gpu: float
    cpu_per_node: float
    host_per_node: float  # host RAM per node: fp32 model load or offloaded states, x1.5 (host.py)
    step_seconds: float | None
    total_hours: float | None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class NoFit:
    """Why no strategy was recommended: `constraint` is "micro-batch" (the user's fits nowhere, a smaller
    one would), "memory" (not even one sequence fits any allowed strategy) or "host RAM" (what fits the
    GPUs needs more host RAM per node than --host-memory)."""

    constraint: str
    message: str


def resolve_recompute(inputs: PlanInputs) -> str | None:
    """The recompute mode the user fixed (--recompute or --[no-]activation-checkpointing); None = as needed."""
    if inputs.recompute is not None:
        return inputs.recompute
    if inputs.activation_checkpointing is not None:
        return "full" if inputs.activation_checkpointing else "none"
    return None


def gpus_per_node(inputs: PlanInputs, num_gpus: int) -> int:
    """GPUs per node for host RAM: --gpus / --nodes; without --nodes at most 8 (DGX/HGX nodes hold 8)."""
    return num_gpus // inputs.nodes if inputs.nodes > 1 else min(num_gpus, 8)


def useful_micro_batch(inputs: PlanInputs, seq_len: int) -> int:
    return inputs.micro_batch or max(1, math.ceil(USEFUL_MICRO_BATCH_TOKENS / seq_len))


def _estimate(inputs, shape, seq_len, num_gpus, memory, strategy: Strategy, mb: int, ckpt: bool):
    return estimate_memory(
        shape,
        seq_len=seq_len,
        micro_batch=mb,
        precision=inputs.precision,
        num_gpus=num_gpus,
        strategy=strategy,
        checkpointing=ckpt,
        gpu_memory_bytes=memory,
        # selective recompute keeps no attention scores, as flash attention does not
        flash_attention=inputs.flash_attention or inputs.recompute == "selective",
        optimizer=inputs.optimizer,
        num_params=inputs.params,  # --params N sizes the states exactly; the shape illustrates it
        shard_group_size=inputs.shard_group_size,
        gpus_per_node=gpus_per_node(inputs, num_gpus),
        host_memory_bytes=inputs.host_memory_bytes,
        zero_init=inputs.zero_init,
    )


def _fits(estimate: MemoryEstimate, micro_batch: int) -> bool:
    """`micro_batch` sequences fit the GPU and the node's host RAM (--host-memory)."""
    return estimate.max_micro_batch >= micro_batch and estimate.host_fits is not False


def _choose(inputs, shape, seq_len, num_gpus, memory) -> tuple[Strategy, bool, bool] | None:
    """(strategy, checkpointing, fits_useful) — the first that fits a useful micro-batch, else the roomiest."""
    useful = useful_micro_batch(inputs, seq_len)
    fixed = resolve_recompute(inputs)
    ckpts = [False, True] if fixed is None else [fixed == "full"]
    allowed = allowed_strategies(inputs.offload)
    for ckpt in ckpts:
        for strategy in allowed:
            if _fits(_estimate(inputs, shape, seq_len, num_gpus, memory, strategy, useful, ckpt), useful):
                return strategy, ckpt, True
    if inputs.micro_batch is not None:
        return None  # the micro-batch the user asked for fits nowhere

    def roomy(sc) -> tuple[bool, int]:
        one = _estimate(inputs, shape, seq_len, num_gpus, memory, sc[0], 1, sc[1])
        return one.host_fits is not False, one.max_micro_batch

    best = max(((s, c) for c in ckpts for s in allowed), key=roomy)
    if not _fits(_estimate(inputs, shape, seq_len, num_gpus, memory, best[0], 1, best[1]), 1):
        return None
    return best[0], best[1], False


def _micro_batch(inputs: PlanInputs, max_mb: int, seq_len: int, per_gpu_share: int) -> int:
    """The user's, or the largest power of two that fits, is not wastefully large, and fills no more
    than one optimizer step's share of sequences per GPU."""
    if inputs.micro_batch is not None:
        return inputs.micro_batch
    cap = max(1, min(max_mb, MAX_MICRO_BATCH_TOKENS // seq_len, per_gpu_share))
    return 1 << (cap.bit_length() - 1)


def _global_batch_target(inputs: PlanInputs, tokens: float, seq_len: int) -> int:
    """Sequences per optimizer step before rounding to micro x accumulation x GPUs."""
    if inputs.global_batch_tokens is not None:
        target = inputs.global_batch_tokens
    else:
        target = min(DEFAULT_GLOBAL_BATCH_TOKENS, tokens / MIN_STEPS)
    return max(1, round(target / seq_len))


def _no_fit(inputs, shape, seq_len, num_gpus, gpu: GpuSpec, table: list[MemoryEstimate]) -> NoFit:
    """Which constraint failed: the user's micro-batch (when one sequence would fit) or memory."""
    ckpt = resolve_recompute(inputs) in (None, "full")  # the roomiest setting the user allows
    allowed = allowed_strategies(inputs.offload)
    ones = [_estimate(inputs, shape, seq_len, num_gpus, gpu.memory_bytes, s, 1, ckpt) for s in allowed]
    best = max(ones, key=lambda e: (e.max_micro_batch, -e.total))
    cap = f"{gpu.memory_bytes / 1e9:.1f} GB {gpu.name}"
    on_gpu = [e for e in ones if e.max_micro_batch >= 1]
    if on_gpu and not any(e.host_fits is not False for e in on_gpu):
        least_host = min(on_gpu, key=lambda e: e.host_per_node)
        host = host_memory(
            inputs.params or shape.num_params, shape.largest_module_params(), least_host.cpu_per_gpu,
            least_host.zero_stage, gpus_per_node(inputs, num_gpus), inputs.zero_init,
        )  # fmt: skip
        return NoFit("host RAM", host_note(least_host.strategy, host, inputs.host_memory_bytes))
    if inputs.micro_batch is not None and best.max_micro_batch >= 1:
        return NoFit(
            "micro-batch",
            f"--micro-batch {inputs.micro_batch} fits no strategy on the {cap}; the largest that fits is "
            f"{best.max_micro_batch} ({best.strategy}): lower --micro-batch, add GPUs or allow --offload",
        )
    least = min(ones, key=lambda e: e.total)
    return NoFit(
        "memory",
        f"even {least.strategy} with one sequence per GPU needs {least.total / 1e9:,.1f} GB per GPU, more "
        f"than the {cap}: add GPUs, shrink the model, allow --offload, or use tensor/pipeline parallelism",
    )


def recommend(
    inputs: PlanInputs,
    shape: ModelShape,
    seq_len: int,
    tokens: float,
    num_gpus: int,
    gpu: GpuSpec | None,
    peak: float | None,
    utilization: fl.Utilization,
    per_token: float,
) -> tuple[Recommendation | None, list[MemoryEstimate], NoFit | None]:
    """The memory table (every strategy at the chosen settings), the recommendation (None = no GPU
    given, or nothing fits) and, when nothing fits, why."""
    memory = gpu.memory_bytes if gpu else None
    target_seqs = _global_batch_target(inputs, tokens, seq_len)
    choice = _choose(inputs, shape, seq_len, num_gpus, memory) if gpu else None
    ckpt = choice[1] if choice else resolve_recompute(inputs) == "full"
    if choice is None:
        mb = inputs.micro_batch or 1
        table = [_estimate(inputs, shape, seq_len, num_gpus, memory, s, mb, ckpt) for s in STRATEGIES]
        return None, table, (_no_fit(inputs, shape, seq_len, num_gpus, gpu, table) if gpu else None)
    strategy, ckpt, fits_useful = choice
    mode = "full" if ckpt else (resolve_recompute(inputs) or "none")
    best = _estimate(inputs, shape, seq_len, num_gpus, memory, strategy, 1, ckpt)
    mb = _micro_batch(inputs, best.max_micro_batch, seq_len, max(1, target_seqs // num_gpus))
    table = [_estimate(inputs, shape, seq_len, num_gpus, memory, s, mb, ckpt) for s in STRATEGIES]
    chosen = next(e for e in table if e.strategy == strategy.name)
    accum = max(1, round(target_seqs / (mb * num_gpus)))
    global_seqs = mb * num_gpus * accum
    steps = math.ceil(tokens / (global_seqs * seq_len))
    hardware = per_token + fl.recompute_flops_per_token(
        shape.matmul_params, shape.num_layers, shape.hidden_size, seq_len, mode
    )
    step_s = utilization.seconds(global_seqs * seq_len, per_token, hardware, num_gpus, peak) if peak else None
    notes = []
    if not fits_useful:
        notes.append(
            f"no strategy fits a micro-batch of {useful_micro_batch(inputs, seq_len)} sequences; "
            f"{strategy.name} fits {best.max_micro_batch}: expect lower MFU, or add GPUs / tensor parallelism"
        )
    if ckpt and resolve_recompute(inputs) is None:
        notes.append(
            "activation checkpointing is on because nothing fits a useful micro-batch without it: it "
            f"recomputes the forward ({hardware / per_token - 1:.0%} more FLOPs per token), charged in the time"
        )
    gpus_per_node = num_gpus // max(1, inputs.nodes)
    return (
        Recommendation(
            strategy=strategy.name,
            zero_stage=strategy.zero_stage,
            offload=strategy.offload,
            activation_checkpointing=ckpt,
            recompute=mode,
            num_gpus=num_gpus,
            micro_batch=mb,
            max_micro_batch=best.max_micro_batch,
            useful_micro_batch=useful_micro_batch(inputs, seq_len),
            fits_useful=fits_useful,
            gradient_accumulation=accum,
            global_batch_sequences=global_seqs,
            global_batch_tokens=global_seqs * seq_len,
            steps=steps,
            memory_per_gpu=chosen.total,
            cpu_per_node=chosen.cpu_per_gpu * gpus_per_node,
            host_per_node=chosen.host_per_node,
            step_seconds=step_s,
            total_hours=step_s * steps / 3600.0 if step_s else None,
            notes=notes,
        ),
        table,
        None,
    )
