"""CLI flags or a caller's values -> validated `PlanInputs` (budget, model, data, hardware, training knobs).

Every field is optional: the planner fills what is missing from what is given (see planner.py).
Validation collects every problem and raises one ConfigError naming the flags.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from domainlm.errors import ConfigError
from domainlm.plan.flops import RECOMPUTE_MODES
from domainlm.plan.host import DEFAULT_HOST_MEMORY_BYTES
from domainlm.plan.memory import OFFLOAD_LEVELS, OPTIMIZERS, PRECISIONS
from domainlm.plan.scaling import FITS
from domainlm.plan.shapes import ARCHES


@dataclass(frozen=True)
class DataSource:
    """Unique tokens available from one source and the share of training tokens it gets (None = by size)."""

    name: str
    available_tokens: float
    ratio: float | None = None


@dataclass(frozen=True)
class ShapeSpec:
    """An explicit architecture; unset fields take the architecture's defaults."""

    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int | None = None
    ffn_size: int | None = None
    tie_embeddings: bool | None = None


@dataclass(frozen=True)
class PlanInputs:
    """Everything `make_plan` may use. Counts are plain numbers (FLOPs, parameters, tokens)."""

    # Compute budget: total FLOPs, or a cluster for a time at an expected MFU.
    flops: float | None = None
    num_gpus: int | None = None
    gpu_type: str | None = None
    hours: float | None = None
    # Utilization: give MFU (model FLOPs / peak) or HFU (hardware FLOPs, recompute included, / peak);
    # neither = HFU 0.4 assumed, so recompute is charged on top of the model's FLOPs.
    mfu: float | None = None
    hfu: float | None = None
    # Model: a size, or an explicit shape; `arch` picks the counting rules.
    params: float | None = None
    shape: ShapeSpec | None = None
    arch: str = "llama"
    vocab_size: int | None = None  # None = the mix's vocabulary, else 32,000 (Llama)
    # Data.
    tokens: float | None = None
    sources: tuple[DataSource, ...] = field(default=())
    # Training.
    seq_len: int | None = None  # None = the mix's seq_len, else 2048
    precision: str = "bf16"
    nodes: int = 1
    micro_batch: int | None = None
    global_batch_tokens: int | None = None
    activation_checkpointing: bool | None = None  # None = only if needed to fit
    recompute: str | None = None  # none, selective, full (= activation_checkpointing); None = as needed
    offload: str = "none"  # most offload the recommendation may use: none, optimizer, params
    flash_attention: bool = True
    price_per_gpu_hour: float | None = None
    fit: str = "besiroglu2024"
    gpu_catalog: str | None = None
    mix_dir: str | None = None
    # Memory (memory.py, host.py, parallel.py).
    optimizer: str = "adamw"  # adamw, adamw-8bit, sgd (with momentum)
    shard_group_size: int | None = None  # ZeRO/FSDP shards over groups of this many GPUs (None = all)
    host_memory_bytes: float = DEFAULT_HOST_MEMORY_BYTES  # host RAM per node
    zero_init: bool = True  # sharded construction at ZeRO-3, as pretrain's deepspeed.zero_init default
    tensor_parallel: int | None = None  # Megatron-LM layout (a separate section of the plan)
    pipeline_parallel: int | None = None
    sequence_parallel: bool = False


def _positive(problems: list[str], flag: str, value: float | None, allow_zero: bool = False) -> None:
    if value is None:
        return
    bad = value < 0 if allow_zero else value <= 0
    if bad or (isinstance(value, float) and not math.isfinite(value)):
        problems.append(f"{flag} must be {'>= 0' if allow_zero else '> 0'}, got {value:g}")


def validate_inputs(inputs: PlanInputs) -> PlanInputs:
    """Range and consistency checks that need no computation; all problems in one ConfigError."""
    p: list[str] = []
    for flag, value in [
        ("--flops", inputs.flops),
        ("--gpus", inputs.num_gpus),
        ("--hours", inputs.hours),
        ("--mfu", inputs.mfu),
        ("--hfu", inputs.hfu),
        ("--params", inputs.params),
        ("--tokens", inputs.tokens),
        ("--vocab", inputs.vocab_size),
        ("--seq-len", inputs.seq_len),
        ("--nodes", inputs.nodes),
        ("--micro-batch", inputs.micro_batch),
        ("--global-batch-tokens", inputs.global_batch_tokens),
    ]:
        _positive(p, flag, value)
    _positive(p, "--price-per-gpu-hour", inputs.price_per_gpu_hour, allow_zero=True)
    for flag, value in (("--mfu", inputs.mfu), ("--hfu", inputs.hfu)):
        if value is not None and value > 1:
            p.append(f"{flag} must be a fraction in (0, 1], got {value:g} (write 40% as 0.4)")
    if inputs.mfu is not None and inputs.hfu is not None:
        p.append(
            f"--mfu {inputs.mfu:g} and --hfu {inputs.hfu:g}: give one (the other follows from the recompute)"
        )
    if inputs.recompute is not None and inputs.recompute not in RECOMPUTE_MODES:
        p.append(f"--recompute {inputs.recompute!r}: use one of {', '.join(RECOMPUTE_MODES)}")
    if inputs.recompute is not None and inputs.activation_checkpointing is not None:
        implied = "full" if inputs.activation_checkpointing else "none"
        if inputs.recompute != implied:
            p.append(
                f"--recompute {inputs.recompute} disagrees with --{'' if inputs.activation_checkpointing else 'no-'}"
                "activation-checkpointing; give one of them"
            )
    for source in inputs.sources:
        _positive(p, f"{source.name} tokens", source.available_tokens)
        if source.ratio is not None and not 0 < source.ratio <= 1:
            p.append(f"{source.name} ratio must be in (0, 1], got {source.ratio:g}")
    ratios = [s.ratio for s in inputs.sources if s.ratio is not None]
    if ratios and len(ratios) == len(inputs.sources) and abs(sum(ratios) - 1) > 1e-6:
        p.append(f"source ratios must sum to 1, got {sum(ratios):g}")
    if inputs.num_gpus and inputs.nodes and inputs.num_gpus % inputs.nodes:
        p.append(f"--gpus {inputs.num_gpus} is not divisible by --nodes {inputs.nodes}")
    if inputs.hours is not None and inputs.num_gpus is None:
        p.append("--hours needs --gpus and --gpu-type (the cluster the hours run on)")
    if (
        inputs.hours is not None or inputs.mfu is not None or inputs.hfu is not None
    ) and inputs.gpu_type is None:
        p.append("--hours/--mfu/--hfu need --gpu-type to know the peak FLOP/s")
    if inputs.arch not in ARCHES:
        p.append(f"--arch {inputs.arch!r}: use one of {', '.join(ARCHES)}")
    if inputs.precision not in PRECISIONS:
        p.append(f"--precision {inputs.precision!r}: use one of {', '.join(PRECISIONS)}")
    if inputs.optimizer not in OPTIMIZERS:
        p.append(f"--optimizer {inputs.optimizer!r}: use one of {', '.join(OPTIMIZERS)}")
    _positive(p, "--host-memory", inputs.host_memory_bytes)
    if inputs.shard_group_size is not None and (
        inputs.shard_group_size <= 0 or (inputs.num_gpus and inputs.num_gpus % inputs.shard_group_size)
    ):
        p.append(
            f"--shard-group-size {inputs.shard_group_size} must divide --gpus {inputs.num_gpus} "
            "(each group of that many GPUs holds one sharded replica)"
        )
    if inputs.offload not in OFFLOAD_LEVELS:
        p.append(f"--offload {inputs.offload!r}: use one of {', '.join(OFFLOAD_LEVELS)}")
    if inputs.fit not in FITS:
        p.append(f"--fit {inputs.fit!r}: use one of {', '.join(FITS)}")
    if inputs.shape is None and inputs.arch != "llama":
        p.append(f"--arch {inputs.arch} needs an explicit shape (--layers, --hidden, --heads)")
    if p:
        raise ConfigError("; ".join(p))
    return inputs


def two_sources(
    domain_tokens: float | None, general_tokens: float | None, domain_ratio: float | None
) -> tuple[DataSource, ...]:
    """--domain-tokens / --general-tokens / --domain-ratio -> sources (ratio None = by size)."""
    if domain_ratio is not None and not 0 < domain_ratio < 1:
        raise ConfigError(f"--domain-ratio must be in (0, 1), e.g. 0.51, got {domain_ratio:g}")
    if domain_tokens is None and general_tokens is None:
        if domain_ratio is not None:
            raise ConfigError("--domain-ratio needs --domain-tokens and --general-tokens")
        return ()
    if domain_tokens is None or general_tokens is None:
        if domain_ratio is not None and domain_ratio < 1:
            raise ConfigError("--domain-ratio needs both --domain-tokens and --general-tokens")
        only = ("domain", domain_tokens) if domain_tokens is not None else ("general", general_tokens)
        return (DataSource(only[0], float(only[1]), 1.0),)
    general_ratio = None if domain_ratio is None else 1.0 - domain_ratio
    return (
        DataSource("domain", float(domain_tokens), domain_ratio),
        DataSource("general", float(general_tokens), general_ratio),
    )
