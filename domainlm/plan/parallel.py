"""Shape + Megatron-LM layout (tensor t, pipeline p, data d, sequence parallel) -> memory per GPU and bubble.

For users who export to Megatron-LM (`domainlm mix --megatron`): a separate path from the DeepSpeed
ZeRO plan (memory.py), with the Megatron papers' formulas.

Activations per layer, bytes, 16-bit (Korthikanti et al. 2022, "Reducing Activation Recomputation
in Large Transformer Models", Table 2), s sequence, b micro-batch, h hidden, a heads:
    tensor parallel                    s·b·h·(10 + 24/t + 5·a·s/(h·t))
    + sequence parallel                s·b·h·(34/t + 5·a·s/(h·t))
    + selective recompute              drops 5·a·s/(h·t) (the attention scores)
    full recompute                     2·s·b·h (/t with sequence parallel): the layer input only
The 24 split by t are Q, K, V, the projection input and the 4h GeLU input and output (8 + 16);
with an MLP of width f the GeLU part is 4f (f = 4h gives the paper's 24). The 10 are the two
LayerNorm inputs, the QKV and MLP inputs and two dropout masks, split only by sequence parallelism.
Per tensor with element size e (2 in 16-bit, 4 in fp32; masks stay 1 byte): unsplit 4e + 2, split
(4e + 2e·f/h)/t, scores (2e + 1)·a·s/(h·t), so fp32 is derived, not doubled.
With the 1F1B schedule the first pipeline stage holds p micro-batches of its L/p layers: L layers'
worth whatever p; the interleaved schedule with v virtual stages raises it by 1 + (p-1)/(p·v)
(section 4.2.3).

Model states per GPU (Megatron-LM's distributed optimizer docs): bf16 parameters with fp32 gradient
accumulation and Adam cost 2 + 4 + 12 = 18 bytes per parameter, 6 + 12/d with the distributed
optimizer (`--use-distributed-optimizer`, optimizer states sharded over the d data-parallel ranks);
fp32: 16, 8 + 8/d. Each GPU holds Ψ/(t·p) parameters.

Pipeline bubble (Narayanan et al. 2021, "Efficient Large-Scale Language Model Training on GPU
Clusters Using Megatron-LM", section 2.2): (p - 1)/m of the ideal time with m micro-batches per
pipeline per step, (p - 1)/(v·m) with the interleaved schedule of v virtual stages.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from domainlm.errors import ConfigError
from domainlm.plan.shapes import ModelShape

RECOMPUTE = ("none", "selective", "full")
# Bytes per parameter: (replicated over data parallel, sharded by the distributed optimizer).
MEGATRON_STATE_BYTES = {"bf16": (6.0, 12.0), "fp16": (6.0, 12.0), "fp32": (8.0, 8.0)}


@dataclass(frozen=True)
class MegatronLayout:
    tensor: int = 1
    pipeline: int = 1
    sequence_parallel: bool = False
    recompute: str = "none"
    virtual_stages: int = 1  # interleaved 1F1B schedule
    flash_attention: bool = False  # fused attention (--use-flash-attn) stores no a·s scores either
    distributed_optimizer: bool = True


@dataclass(frozen=True)
class MegatronMemory:
    """Per GPU of the first pipeline stage (the one that holds the most activations); bytes."""

    tensor: int
    pipeline: int
    data: int
    sequence_parallel: bool
    recompute: str
    params_per_gpu: float
    model_states: float
    activations: float
    total: float
    micro_batches: int  # per pipeline per optimizer step
    bubble_fraction: float  # of the ideal step time
    fits: bool | None

    def to_dict(self) -> dict:
        return asdict(self)


def layer_activation_bytes_tp(
    shape: ModelShape, seq_len: int, micro_batch: int, layout: MegatronLayout, precision: str = "bf16"
) -> float:
    """Korthikanti et al. 2022 Table 2 for one layer on one GPU (module docstring)."""
    s, b, h, a, t = seq_len, micro_batch, shape.hidden_size, shape.num_heads, layout.tensor
    e = 4.0 if precision == "fp32" else 2.0
    sbh = s * b * h
    if layout.recompute == "full":
        return e * sbh / (t if layout.sequence_parallel else 1)
    unsplit = 4 * e + 2  # two LayerNorm inputs, QKV and MLP inputs; two 1-byte dropout masks
    unsplit /= t if layout.sequence_parallel else 1
    split = (4 * e + 2 * e * shape.ffn_size / h) / t  # Q, K, V, projection input; GeLU in and out
    scores = (
        0.0 if layout.recompute == "selective" or layout.flash_attention else (2 * e + 1) * a * s / (h * t)
    )
    return sbh * (unsplit + split + scores)


def validate_layout(num_gpus: int, shape: ModelShape, layout: MegatronLayout) -> int:
    """The data-parallel size d = GPUs / (t·p); ConfigError naming the flag when the layout cannot exist."""
    t, p = layout.tensor, layout.pipeline
    problems = []
    if t < 1 or p < 1:
        problems.append(f"--tensor-parallel {t} and --pipeline-parallel {p} must be >= 1")
    elif num_gpus % (t * p):
        problems.append(
            f"--gpus {num_gpus} is not divisible by --tensor-parallel {t} x --pipeline-parallel {p}"
        )
    if t >= 1 and shape.num_heads % t:
        problems.append(f"--tensor-parallel {t} must divide the {shape.num_heads} attention heads")
    if p >= 1 and shape.num_layers % p:
        problems.append(f"--pipeline-parallel {p} must divide the {shape.num_layers} layers")
    if layout.recompute not in RECOMPUTE:
        problems.append(f"--recompute {layout.recompute!r}: use one of {', '.join(RECOMPUTE)}")
    if layout.sequence_parallel and t == 1:
        problems.append("--sequence-parallel needs --tensor-parallel > 1 (it splits along the TP group)")
    if problems:
        raise ConfigError("; ".join(problems))
    return num_gpus // (t * p)


def bubble_fraction(pipeline: int, micro_batches: int, virtual_stages: int = 1) -> float:
    """Narayanan et al. 2021: (p - 1) / (v·m)."""
    return (pipeline - 1) / (virtual_stages * micro_batches)


def megatron_memory(
    shape: ModelShape,
    *,
    num_params: float,
    num_gpus: int,
    seq_len: int,
    micro_batch: int,
    global_batch_sequences: int,
    precision: str,
    layout: MegatronLayout,
    gpu_memory_bytes: float | None,
) -> MegatronMemory:
    """Model states + first-stage activations per GPU, and the pipeline bubble, for one layout."""
    d = validate_layout(num_gpus, shape, layout)
    t, p = layout.tensor, layout.pipeline
    params = num_params / (t * p)
    replicated, sharded = MEGATRON_STATE_BYTES[precision]
    states = params * (replicated + sharded / d if layout.distributed_optimizer else replicated + sharded)
    per_layer = layer_activation_bytes_tp(shape, seq_len, micro_batch, layout, precision)
    interleave = 1 + (p - 1) / (p * layout.virtual_stages) if layout.virtual_stages > 1 else 1.0
    activations = shape.num_layers * per_layer * interleave  # first stage: p micro-batches x L/p layers
    micro_batches = max(1, global_batch_sequences // (micro_batch * d))
    total = states + activations
    return MegatronMemory(
        tensor=t,
        pipeline=p,
        data=d,
        sequence_parallel=layout.sequence_parallel,
        recompute=layout.recompute,
        params_per_gpu=params,
        model_states=states,
        activations=activations,
        total=total,
        micro_batches=micro_batches,
        bubble_fraction=bubble_fraction(p, micro_batches, layout.virtual_stages),
        fits=None if gpu_memory_bytes is None else total <= gpu_memory_bytes,
    )


def megatron_plan(
    shape: ModelShape,
    *,
    tensor: int | None,
    pipeline: int | None,
    sequence_parallel: bool,
    recompute: str,
    num_gpus: int,
    seq_len: int,
    micro_batch: int,
    global_batch_sequences: int,
    precision: str,
    gpu_memory_bytes: float | None,
    flash_attention: bool = False,
) -> MegatronMemory | None:
    """The Megatron-LM section of a plan, when --tensor-parallel or --pipeline-parallel is given."""
    if tensor is None and pipeline is None:
        if sequence_parallel:
            raise ConfigError("--sequence-parallel needs --tensor-parallel > 1 (a Megatron-LM layout)")
        return None
    layout = MegatronLayout(
        tensor or 1, pipeline or 1, sequence_parallel, recompute, flash_attention=flash_attention
    )
    return megatron_memory(
        shape,
        num_params=shape.num_params,
        num_gpus=num_gpus,
        seq_len=seq_len,
        micro_batch=micro_batch,
        global_batch_sequences=global_batch_sequences,
        precision=precision,
        layout=layout,
        gpu_memory_bytes=gpu_memory_bytes,
    )
