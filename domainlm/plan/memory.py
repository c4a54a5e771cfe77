"""Shape + precision + optimizer + strategy -> GPU memory per rank: weights, grads, optimizer, activations, buffers.

Two conventions for the model states, both reported:
- The ZeRO paper (Rajbhandari et al. 2020, section 3.1 and figure 1): with Adam in mixed precision
  each parameter costs 2 bytes (16-bit weights) + 2 (16-bit gradients) + K = 12 (fp32 master
  weights, momentum, variance); with Nd data-parallel ranks
      DDP     (2 + 2 + K)·Ψ                 ZeRO-2 (Pos+g)    2Ψ + (2 + K)·Ψ/Nd
      ZeRO-1  (Pos)  2Ψ + 2Ψ + K·Ψ/Nd       ZeRO-3 (Pos+g+p)  (2 + 2 + K)·Ψ/Nd
  (`zero_paper_bytes`; 7.5B params, Nd = 64: 120, 31.4, 16.6, 1.88 GB).
- What DeepSpeed allocates, which the planner adds up (`model_state_bytes`) and which matches
  DeepSpeed's own `estimate_zero2/3_model_states_mem_needs` (a test calls them): in mixed precision
  the gradients are also kept as an fp32 partition of 4 bytes/param/Nd (`single_partition_of_fp32_groups
  [i].grad` at ZeRO-1/2, the full-size fp32 buffer of `BF16_Optimizer` without ZeRO); at ZeRO-3 the
  16-bit gradients are reduce-scattered straight into that fp32 partition, so 2 + 4 + 12 = 18 bytes
  per parameter per Nd, not 16; ZeRO-3 also holds the largest module gathered, 16-bit weights and
  gradients (4 bytes x its parameters, DeepSpeed's `largest_layer_memory`).
Offload (ZeRO-Offload, Ren et al. 2021) moves the fp32 gradient partition and the optimizer states
(4 + 12 = 16 bytes/param/Nd) and at ZeRO-3 the 16-bit weights (2 more) to host memory (host.py).

Optimizers (`OPTIMIZERS`, bytes of state per parameter, the fp32 master copy included in mixed
precision): AdamW 12 (4 + 8 in fp32); 8-bit AdamW (Dettmers et al. 2022, bitsandbytes: two uint8
states + one fp32 absmax per 256-element block each) 4 + 2.03; SGD with momentum 4 + 4.

Shard groups (`shard_group_size` G, MiCS / hpZ, FSDP HYBRID_SHARD): the sharded states divide by G,
not by all GPUs; the num_gpus / G groups are replicas that all-reduce gradients across groups.
BloombergGPT trained on 512 A100s sharded over 128 (4 replicas).

Activations: activations.py (derived per tensor and per precision).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from domainlm.errors import ConfigError
from domainlm.plan.activations import activation_bytes, layer_activation_bytes
from domainlm.plan.host import host_memory
from domainlm.plan.shapes import ModelShape

__all__ = ["activation_bytes", "layer_activation_bytes"]  # re-exported: their home is activations.py

GIB = 1024**3

# Optimizer state bytes per parameter: (mixed precision, incl. the 4-byte fp32 master; fp32 training).
OPTIMIZERS: dict[str, tuple[float, float]] = {
    "adamw": (12.0, 8.0),
    "adamw-8bit": (4.0 + 2.0 + 8.0 / 256, 2.0 + 8.0 / 256),
    "sgd": (8.0, 4.0),  # with momentum: one fp32 buffer
}
# Weights and gradients per parameter by training precision, and (the ZeRO paper's) Adam K.
BYTES_PER_PARAM = {"fp32": (4, 4, 8), "bf16": (2, 2, 12), "fp16": (2, 2, 12)}
PRECISIONS = tuple(BYTES_PER_PARAM)
# Storage only (holding or serving the weights): bytes per parameter.
STORAGE_BYTES = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "int8": 1.0}
FP32_GRAD_BYTES = 4  # DeepSpeed's fp32 gradient partition in mixed precision
GATHERED_BYTES = 4  # ZeRO-3: the largest module's 16-bit weights + gradients while it computes

# Reduce / allgather bucket size (elements), each a communication buffer: domainlm recipes' default
# (deepspeed.reduce_bucket_size: 50M); DeepSpeed's own default is 500M (1 GB per bucket in bf16).
DEFAULT_BUCKET_ELEMENTS = 50_000_000
# The caching allocator fragments memory; plan against 95% of the device so a plan that "just fits"
# does not die at step 1000 when a long document shifts the allocation pattern.
USABLE_FRACTION = 0.95
# CUDA context, cuBLAS / NCCL workspaces and allocator fragmentation: what a process loses to the
# runtime before any tensor is allocated (measured 0.5-1 GiB on A100/H100).
RUNTIME_RESERVE_BYTES = 1 * GIB


@dataclass(frozen=True)
class Strategy:
    """A data-parallel memory strategy: ZeRO stage (0 = plain DDP) and what is offloaded to CPU."""

    name: str
    zero_stage: int
    offload_optimizer: bool = False
    offload_params: bool = False

    @property
    def offload(self) -> str:
        return "params" if self.offload_params else "optimizer" if self.offload_optimizer else "none"

    def fsdp(self, grouped: bool = False) -> str:
        """The PyTorch FSDP sharding strategy with the same memory; "none" where FSDP has none (it has
        no optimizer-only sharding, and its CPUOffload moves the parameters with the optimizer)."""
        if self.offload_params:
            return ("HYBRID_SHARD" if grouped else "FULL_SHARD") + "+CPUOffload"
        if self.offload_optimizer:
            return "none"
        names = {0: "NO_SHARD", 1: "none"}
        names[2] = "_HYBRID_SHARD_ZERO2" if grouped else "SHARD_GRAD_OP"
        names[3] = "HYBRID_SHARD" if grouped else "FULL_SHARD"
        return names[self.zero_stage]


# Ordered from least to most sharding/offload: the recommendation takes the first that fits.
STRATEGIES: tuple[Strategy, ...] = (
    Strategy("ddp", 0),
    Strategy("zero1", 1),
    Strategy("zero2", 2),
    Strategy("zero3", 3),
    Strategy("zero2+offload-opt", 2, offload_optimizer=True),
    Strategy("zero3+offload-opt", 3, offload_optimizer=True),
    Strategy("zero3+offload-all", 3, offload_optimizer=True, offload_params=True),
)
OFFLOAD_LEVELS = ("none", "optimizer", "params")


def allowed_strategies(offload: str) -> tuple[Strategy, ...]:
    """Strategies using at most `offload` (none < optimizer < params)."""
    if offload not in OFFLOAD_LEVELS:
        raise ConfigError(f"--offload {offload!r}: use one of {', '.join(OFFLOAD_LEVELS)}")
    rank = OFFLOAD_LEVELS.index(offload)
    return tuple(s for s in STRATEGIES if OFFLOAD_LEVELS.index(s.offload) <= rank)


def bytes_per_param(precision: str, optimizer: str = "adamw") -> tuple[float, float, float]:
    """(weights, gradients, optimizer states incl. the fp32 master copy) per parameter, paper convention."""
    if precision not in BYTES_PER_PARAM:
        raise ConfigError(f"--precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if optimizer not in OPTIMIZERS:
        raise ConfigError(f"--optimizer {optimizer!r}: use one of {', '.join(OPTIMIZERS)}")
    w, g, _ = BYTES_PER_PARAM[precision]
    mixed, fp32 = OPTIMIZERS[optimizer]
    return w, g, fp32 if precision == "fp32" else mixed


def zero_paper_bytes(
    num_params: float, precision: str, zero_stage: int, nd: int, optimizer: str = "adamw"
) -> float:
    """Model states per GPU as the ZeRO paper counts them (module docstring), no offload."""
    w, g, k = (b * num_params for b in bytes_per_param(precision, optimizer))
    return (
        (w / nd if zero_stage >= 3 else w)
        + (g / nd if zero_stage >= 2 else g)
        + (k / nd if zero_stage else k)
    )


@dataclass(frozen=True)
class ModelStates:
    """Bytes per GPU for weights, gradients (16-bit and DeepSpeed's fp32 partition), optimizer states,
    ZeRO-3's gathered module, and bytes per GPU kept on the host (offload)."""

    weights: float
    grads: float
    grads_fp32: float
    optimizer: float
    gathered: float
    cpu: float

    @property
    def gpu_total(self) -> float:
        return self.weights + self.grads + self.grads_fp32 + self.optimizer + self.gathered


def model_state_bytes(
    num_params: float,
    precision: str,
    strategy: Strategy,
    num_gpus: int,
    *,
    optimizer: str = "adamw",
    largest_module_params: float = 0.0,
) -> ModelStates:
    """What DeepSpeed keeps per GPU (module docstring) with `num_gpus` ranks sharing the shards."""
    w, g, k = (b * num_params for b in bytes_per_param(precision, optimizer))
    stage, nd = strategy.zero_stage, num_gpus
    g32 = 0.0 if precision == "fp32" else FP32_GRAD_BYTES * num_params
    weights = w / nd if stage >= 3 else w
    grads = 0.0 if stage >= 3 and g32 else g / nd if stage >= 2 else g
    grads_fp32 = g32 / nd if stage >= 1 else g32
    optim = k / nd if stage >= 1 else k
    gathered = GATHERED_BYTES * largest_module_params if stage >= 3 else 0.0
    cpu = 0.0
    if strategy.offload_optimizer:
        # The fp32 gradient partition and the optimizer live on the host; 16-bit gradients only
        # pass through the reduce buckets (in fp32 training the gradient partition moves instead).
        cpu += optim + (grads_fp32 if g32 else grads)
        optim = grads_fp32 = 0.0
        grads = 0.0 if stage >= 2 else grads
    if strategy.offload_params:
        cpu += weights
        weights = 0.0
    return ModelStates(weights, grads, grads_fp32, optim, gathered, cpu)


def working_bytes(num_params: float, precision: str, strategy: Strategy, bucket_elements: int) -> float:
    """Communication buckets (reduce, and at ZeRO-3 the parameter prefetch) and the runtime reserve."""
    w, g, _ = BYTES_PER_PARAM[precision]
    bucket = min(num_params, bucket_elements)
    # ZeRO-0/1/2 double-buffer the gradient reduction; ZeRO-3 reduces one bucket and prefetches one.
    buffers = bucket * g * 2 if strategy.zero_stage < 3 else bucket * (g + w)
    return buffers + RUNTIME_RESERVE_BYTES


@dataclass(frozen=True)
class MemoryEstimate:
    """Memory per GPU for one strategy at one micro-batch; bytes unless named otherwise."""

    strategy: str
    zero_stage: int
    offload: str
    fsdp: str  # the PyTorch FSDP sharding strategy with the same memory
    micro_batch: int
    shard_group_size: int  # GPUs the states are sharded over (all GPUs unless --shard-group-size)
    weights: float
    grads: float  # 16-bit gradients (fp32 in fp32 training)
    grads_fp32: float  # DeepSpeed's fp32 gradient partition (mixed precision)
    optimizer: float
    gathered: float  # ZeRO-3: the largest module gathered (weights + gradients, 16-bit)
    activations: float
    working: float
    total: float
    model_states_paper: float  # the ZeRO paper's 2 + 2 + K convention, on the GPU, without offload
    cpu_per_gpu: float
    fits: bool | None  # None = no GPU given
    max_micro_batch: int | None  # the largest micro-batch that fits (0 = not even one sequence)
    host_per_node: float = 0.0  # host RAM per node: loading or offloaded states, x1.5 (host.py)
    host_load_per_node: float = 0.0  # fp32 model built by every rank of the node (no zero.Init)
    host_load_sharded_per_node: float = 0.0  # with zero.Init (ZeRO-3): the largest module per rank
    host_fits: bool | None = None  # against --host-memory (None = not given)

    def to_dict(self) -> dict:
        return asdict(self)


def shard_group(num_gpus: int, shard_group_size: int | None) -> int:
    """The GPUs states are sharded over: all of them, or a group size that divides them."""
    if shard_group_size is None:
        return num_gpus
    if shard_group_size <= 0 or num_gpus % shard_group_size:
        raise ConfigError(
            f"--shard-group-size {shard_group_size} must divide --gpus {num_gpus} (groups of equal size "
            f"that each hold one replica); e.g. --shard-group-size {num_gpus // max(1, num_gpus // 8) or 1}"
        )
    return shard_group_size


def estimate_memory(
    shape: ModelShape,
    *,
    seq_len: int,
    micro_batch: int,
    precision: str,
    num_gpus: int,
    strategy: Strategy,
    checkpointing: bool,
    gpu_memory_bytes: float | None,
    flash_attention: bool = True,
    bucket_elements: int = DEFAULT_BUCKET_ELEMENTS,
    optimizer: str = "adamw",
    num_params: float | None = None,
    shard_group_size: int | None = None,
    gpus_per_node: int | None = None,
    host_memory_bytes: float | None = None,
    zero_init: bool = False,
) -> MemoryEstimate:
    """Sum weights + grads + optimizer + activations + working buffers for one GPU.

    `num_params` (default the shape's exact count) sizes the model states: a user's --params N is
    used exactly, the shape only illustrates it (its activations, its largest module).
    """
    n = float(shape.num_params if num_params is None else num_params)
    group = shard_group(num_gpus, shard_group_size)
    states = model_state_bytes(
        n,
        precision,
        strategy,
        group,
        optimizer=optimizer,
        largest_module_params=shape.largest_module_params(),
    )
    working = working_bytes(n, precision, strategy, bucket_elements)
    per_node = gpus_per_node or min(num_gpus, 8)
    host = host_memory(n, shape.largest_module_params(), states.cpu, strategy.zero_stage, per_node, zero_init)
    static = states.gpu_total + working

    def act(b: int) -> float:
        return activation_bytes(shape, seq_len, b, precision, checkpointing, flash_attention)

    activations = act(micro_batch)
    total = static + activations
    # Activations grow linearly in b (the checkpointed recompute layer included), so solve directly.
    per_sequence = act(2) - act(1)
    fixed_act = act(1) - per_sequence
    fits = max_mb = None
    if gpu_memory_bytes is not None:
        usable = gpu_memory_bytes * USABLE_FRACTION
        fits = total <= usable
        max_mb = max(0, int((usable - static - fixed_act) // per_sequence))
    return MemoryEstimate(
        strategy=strategy.name,
        zero_stage=strategy.zero_stage,
        offload=strategy.offload,
        fsdp=strategy.fsdp(grouped=group < num_gpus),
        micro_batch=micro_batch,
        shard_group_size=group,
        weights=states.weights,
        grads=states.grads,
        grads_fp32=states.grads_fp32,
        optimizer=states.optimizer,
        gathered=states.gathered,
        activations=activations,
        working=working,
        total=total,
        model_states_paper=zero_paper_bytes(n, precision, strategy.zero_stage, group, optimizer),
        cpu_per_gpu=states.cpu,
        fits=fits,
        max_micro_batch=max_mb,
        host_per_node=host.total,
        host_load_per_node=host.load,
        host_load_sharded_per_node=host.load_sharded,
        host_fits=None if host_memory_bytes is None else host.total <= host_memory_bytes,
    )


def rule_of_thumb_bytes(
    num_params: float, precision: str = "bf16", optimizer: str = "adamw"
) -> dict[str, float]:
    """The newcomer's rule ("1B parameters: 4 GB in fp32, ~16-20x that to train with Adam"), exactly:
    bytes to hold the weights per storage precision, and per parameter to train (the ZeRO paper's
    2 + 2 + K, and DeepSpeed's with its fp32 gradients) before any sharding."""
    w, g, k = bytes_per_param(precision, optimizer)
    paper = w + g + k
    deepspeed = paper + (0.0 if precision == "fp32" else FP32_GRAD_BYTES)
    return {
        "weights_fp32_bytes": STORAGE_BYTES["fp32"] * num_params,  # 1B parameters = 4 GB
        "weights_bf16_bytes": STORAGE_BYTES["bf16"] * num_params,
        "weights_int8_bytes": STORAGE_BYTES["int8"] * num_params,
        "train_states_bytes_per_param": paper,
        "train_states_bytes": paper * num_params,
        "train_upper_bytes_per_param": deepspeed,
        "train_upper_bytes": deepspeed * num_params,
    }
