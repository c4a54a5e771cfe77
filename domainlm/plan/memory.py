"""Shape + precision + parallel strategy -> GPU memory per rank: weights, grads, optimizer, activations, buffers.

Model states follow the ZeRO paper (Rajbhandari et al. 2019, section 3.1 and figure 1): with Adam
in mixed precision each parameter costs 2 bytes (16-bit weights) + 2 (16-bit gradients) + K = 12
(fp32 master weights, momentum, variance) = 16 bytes; in pure fp32 it is 4 + 4 + 8. With Nd
data-parallel ranks:
    DDP     (2 + 2 + K)·Ψ                 ZeRO-2 (Pos+g)    2Ψ + (2 + K)·Ψ/Nd
    ZeRO-1  (Pos)  2Ψ + 2Ψ + K·Ψ/Nd       ZeRO-3 (Pos+g+p)  (2 + 2 + K)·Ψ/Nd
CPU offload (ZeRO-Offload, Ren et al. 2021; ZeRO-Infinity) moves the optimizer states and the
gradient partition (and, at stage 3, the parameters) to host memory.

Activations follow Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer
Models", section 4.1): one GPT layer stores s·b·h·(34 + 5·a·s/h) bytes in 16-bit training (s sequence
length, b micro-batch, h hidden, a heads), the 5·a·s/h part being the attention scores. FlashAttention
(PyTorch SDPA) never stores the scores, leaving 34·s·b·h; full activation checkpointing keeps only
each layer's 2·s·b·h input plus one layer's activations while it is recomputed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from domainlm.errors import ConfigError
from domainlm.plan.shapes import ModelShape

GIB = 1024**3

# bytes per parameter: (weights, gradients, optimizer states incl. fp32 master copy), Adam.
BYTES_PER_PARAM = {"fp32": (4, 4, 8), "bf16": (2, 2, 12), "fp16": (2, 2, 12)}
PRECISIONS = tuple(BYTES_PER_PARAM)

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


@dataclass(frozen=True)
class ModelStates:
    """Bytes per GPU for weights, gradients and optimizer states, and bytes per GPU kept on the host."""

    weights: float
    grads: float
    optimizer: float
    cpu: float

    @property
    def gpu_total(self) -> float:
        return self.weights + self.grads + self.optimizer


def model_state_bytes(num_params: float, precision: str, strategy: Strategy, num_gpus: int) -> ModelStates:
    """The ZeRO paper's per-stage formula (module docstring), with offload moving terms to the host."""
    if precision not in BYTES_PER_PARAM:
        raise ConfigError(f"--precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    w, g, k = (b * num_params for b in BYTES_PER_PARAM[precision])
    stage, nd = strategy.zero_stage, num_gpus
    weights = w / nd if stage >= 3 else w
    grads = g / nd if stage >= 2 else g
    optimizer = k / nd if stage >= 1 else k
    cpu = 0.0
    if strategy.offload_optimizer:
        cpu += optimizer + grads
        optimizer = grads = 0.0
    if strategy.offload_params:
        cpu += weights
        weights = 0.0
    return ModelStates(weights, grads, optimizer, cpu)


def layer_activation_bytes(shape: ModelShape, seq_len: int, micro_batch: int, flash_attention: bool) -> float:
    """Bytes one transformer layer keeps for backward in 16-bit training (Korthikanti et al. 2022).

    GPT-style (dropout, 4h GeLU MLP): attention 11·sbh + 5·as²b, MLP 19·sbh, two LayerNorms 4·sbh.
    Llama-style, counted as the Hugging Face implementation saves tensors (a test checks it with
    saved-tensor hooks): no dropout; each RMSNorm keeps its input upcast to fp32 (4·sbh), the
    normalized 16-bit tensor for the weight's gradient (2·sbh) and its output, the next matmul's
    input (2·sbh); attention keeps q, k, v and the output projection's input (8·sbh); the SwiGLU
    MLP of width f keeps gate, SiLU(gate), up and their product (8·sbf). Eager attention adds the
    fp32 softmax and its 16-bit copy, 6·as²b. Total 24·sbh + 8·sbf (+ 6·as²b eager).
    """
    s, b, h, a = seq_len, micro_batch, shape.hidden_size, shape.num_heads
    f = shape.ffn_size
    if shape.arch == "llama":
        per_token, scores = 24 * h + 8 * f, 6
    else:
        per_token, scores = 18 * h + 4 * f, 5  # 11h + (3h + 4f) + 4h = 34h at f = 4h
    total = s * b * per_token
    if not flash_attention:
        total += scores * a * s * s * b
    return float(total)


def activation_bytes(
    shape: ModelShape,
    seq_len: int,
    micro_batch: int,
    precision: str,
    checkpointing: bool,
    flash_attention: bool = True,
) -> float:
    """Peak activation bytes for one micro-batch: all layers + embedding output + logits and loss."""
    layer = layer_activation_bytes(shape, seq_len, micro_batch, flash_attention)
    scale = 2.0 if precision == "fp32" else 1.0  # the formula counts 16-bit tensors
    tokens = seq_len * micro_batch
    if checkpointing:
        # Each layer's input (2·sbh) is kept; one layer is rebuilt at a time in backward.
        layers = shape.num_layers * 2 * tokens * shape.hidden_size + layer
    else:
        layers = shape.num_layers * layer
    # The final norm, counted like the layers' norms (8·sbh for HF Llama, 4·sbh for LayerNorm models).
    embed_and_norm = (8 if shape.arch == "llama" else 4) * tokens * shape.hidden_size
    # Peak at the loss: the fp32 log-softmax saved for backward (4·sbV), the 16-bit logits the model
    # returns (2·sbV, held while the output lives), and the fp32 gradient that backward starts with
    # (4·sbV). At a 131k vocabulary this rivals a whole layer's activations.
    act = 4 if precision == "fp32" else 2
    logits = tokens * shape.vocab_size * (act + 8)
    return scale * (layers + embed_and_norm) + logits


def working_bytes(shape: ModelShape, precision: str, strategy: Strategy, bucket_elements: int) -> float:
    """Communication buckets, stage-3 gathered layers, and the runtime reserve."""
    w, g, _ = BYTES_PER_PARAM[precision]
    num_params = shape.num_params
    buckets = min(num_params, bucket_elements) * g * (2 if strategy.zero_stage < 3 else 1)
    gathered = 0.0
    if strategy.zero_stage >= 3:
        # The layer being computed and the prefetched next one, or the (largest) embedding matrix.
        biggest = max(2 * shape.layer_params(), shape.vocab_size * shape.hidden_size)
        gathered = w * biggest
    return buckets + gathered + RUNTIME_RESERVE_BYTES


@dataclass(frozen=True)
class MemoryEstimate:
    """Memory per GPU for one strategy at one micro-batch; bytes unless named otherwise."""

    strategy: str
    zero_stage: int
    offload: str
    micro_batch: int
    weights: float
    grads: float
    optimizer: float
    activations: float
    working: float
    total: float
    cpu_per_gpu: float
    fits: bool | None  # None = no GPU given
    max_micro_batch: int | None  # the largest micro-batch that fits (0 = not even one sequence)

    def to_dict(self) -> dict:
        return asdict(self)


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
) -> MemoryEstimate:
    """Sum weights + grads + optimizer + activations + working buffers for one GPU."""
    states = model_state_bytes(shape.num_params, precision, strategy, num_gpus)
    working = working_bytes(shape, precision, strategy, bucket_elements)
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
        micro_batch=micro_batch,
        weights=states.weights,
        grads=states.grads,
        optimizer=states.optimizer,
        activations=activations,
        working=working,
        total=total,
        cpu_per_gpu=states.cpu,
        fits=fits,
        max_micro_batch=max_mb,
    )
