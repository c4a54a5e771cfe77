"""Decoder shape -> exact parameter count (Llama, GPT-2, GPT-NeoX, BLOOM), and target N -> a Llama shape.

Counts follow the Hugging Face implementations term by term (tests compare them with
`num_parameters()` of configs built on the meta device), so a user can check a published model:
BLOOM-style BloombergGPT (70 layers, hidden 7680, vocab 131,072) counts 50.56B, the paper's "50.6B".
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass
from typing import Literal

from domainlm.errors import ConfigError

Arch = Literal["llama", "gpt2", "neox", "bloom"]
ARCHES: tuple[str, ...] = ("llama", "gpt2", "neox", "bloom")


@dataclass(frozen=True)
class ModelShape:
    """A decoder-only transformer. `ffn_size` is the MLP inner width (SwiGLU for llama, 4H otherwise)."""

    arch: Arch
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    ffn_size: int
    vocab_size: int
    tie_embeddings: bool
    max_positions: int = 0  # learned position table size (gpt2 only)
    # --params N: the count FLOPs and memory use, exactly; the shape then only illustrates N (its
    # activations, its largest module) and keeps its own count in `shape_params`.
    pinned_params: int | None = None

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    def layer_params(self) -> int:
        """Parameters of one transformer block."""
        h, f, kv = self.hidden_size, self.ffn_size, self.num_kv_heads * self.head_dim
        if self.arch == "llama":
            # q, o: h x h; k, v: h x kv (GQA); gate, up, down: h x f; two RMSNorm weights; no biases.
            return 2 * h * h + 2 * h * kv + 3 * h * f + 2 * h
        # gpt2 / neox / bloom: fused qkv (3h x h + bias), out proj (h x h + bias),
        # MLP h -> f -> h with biases, two LayerNorms (weight + bias).
        return (3 * h * h + 3 * h) + (h * h + h) + (2 * h * f + f + h) + 4 * h

    def embedding_params(self) -> int:
        """Lookup-only tables: token embedding (+ learned positions). They do no matmul FLOPs."""
        return self.vocab_size * self.hidden_size + self.max_positions * self.hidden_size

    def head_params(self) -> int:
        """The LM head's own weights (0 when tied to the token embedding)."""
        return 0 if self.tie_embeddings else self.vocab_size * self.hidden_size

    def norm_params(self) -> int:
        """Final norm (+ BLOOM's LayerNorm right after the embedding)."""
        h = self.hidden_size
        if self.arch == "llama":
            return h
        return 4 * h if self.arch == "bloom" else 2 * h

    def largest_module_params(self) -> int:
        """Parameters of the largest single module (DeepSpeed's `largest_layer_params`, what ZeRO-3
        gathers at once): usually the embedding or LM head (V·H), else the widest matmul."""
        h, f, v = self.hidden_size, self.ffn_size, self.vocab_size
        if self.arch == "llama":
            return max(v * h, h * f, h * h)
        return max(v * h, 3 * h * h + 3 * h, h * f + f)  # fused qkv, MLP up projection (with biases)

    @property
    def num_params(self) -> int:
        """The parameter count the plan uses: --params N when pinned, else `shape_params`."""
        return self.shape_params if self.pinned_params is None else self.pinned_params

    @property
    def shape_params(self) -> int:
        """Total distinct parameters, as `model.num_parameters()` counts them (tied weights once)."""
        return (
            self.embedding_params()
            + self.num_layers * self.layer_params()
            + self.norm_params()
            + self.head_params()
        )

    @property
    def matmul_params(self) -> int:
        """Parameters that do FLOPs: all but lookup tables; a tied embedding counts once, as the head."""
        tied_head = self.vocab_size * self.hidden_size if self.tie_embeddings else 0
        return self.num_params - self.embedding_params() + tied_head

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "head_dim": self.head_dim,
            "num_params": self.num_params,
            "shape_params": self.shape_params,
        }


def pin_params(shape: ModelShape, num_params: float) -> ModelShape:
    """The shape standing for exactly `num_params` parameters (--params N)."""
    return dataclasses.replace(shape, pinned_params=int(round(num_params)))


def validate_shape(shape: ModelShape) -> ModelShape:
    """Reject shapes no implementation can build, naming the flag to change."""
    problems = []
    for flag, value in [
        ("--layers", shape.num_layers),
        ("--hidden", shape.hidden_size),
        ("--heads", shape.num_heads),
        ("--kv-heads", shape.num_kv_heads),
        ("--ffn", shape.ffn_size),
        ("--vocab", shape.vocab_size),
    ]:
        if value <= 0:
            problems.append(f"{flag} must be > 0, got {value}")
    if not problems and shape.hidden_size % shape.num_heads:
        problems.append(f"--hidden {shape.hidden_size} is not divisible by --heads {shape.num_heads}")
    if not problems and shape.num_heads % shape.num_kv_heads:
        problems.append(f"--heads {shape.num_heads} is not divisible by --kv-heads {shape.num_kv_heads}")
    if shape.arch != "llama" and shape.num_kv_heads != shape.num_heads:
        problems.append(f"--kv-heads applies to --arch llama only ({shape.arch} uses one kv head per head)")
    if problems:
        raise ConfigError("; ".join(problems))
    return shape


def llama_ffn_size(hidden_size: int, multiple_of: int = 256) -> int:
    """Llama's SwiGLU width: 2/3 of 4H (same FLOPs as a 4H GeLU MLP), rounded up to `multiple_of`."""
    return multiple_of * math.ceil(int(8 * hidden_size / 3) / multiple_of)


def make_shape(
    arch: Arch,
    num_layers: int,
    hidden_size: int,
    num_heads: int,
    vocab_size: int,
    num_kv_heads: int | None = None,
    ffn_size: int | None = None,
    tie_embeddings: bool | None = None,
    max_positions: int = 2048,
) -> ModelShape:
    """A shape with each architecture's defaults filled in (Llama: SwiGLU width, untied; GPT-2 and BLOOM tied)."""
    if arch not in ARCHES:
        raise ConfigError(f"--arch {arch!r}: unknown; use one of {', '.join(ARCHES)}")
    if ffn_size is None:
        ffn_size = llama_ffn_size(hidden_size) if arch == "llama" else 4 * hidden_size
    if tie_embeddings is None:
        tie_embeddings = arch in ("gpt2", "bloom")
    shape = ModelShape(
        arch=arch,
        num_layers=num_layers,
        hidden_size=hidden_size,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads or num_heads,
        ffn_size=ffn_size,
        vocab_size=vocab_size,
        tie_embeddings=tie_embeddings,
        max_positions=max_positions if arch == "gpt2" else 0,
    )
    return validate_shape(shape)


# Width-to-depth ratio of published Llama shapes: 7B 4096/32 = 128, 13B 5120/40 = 128,
# 33B 6656/60 = 111, 65B 8192/80 = 102; small models run narrower (GPT-3 125M 768/12 = 64).
# Kaplan et al. 2020 find loss flat across a wide band of ratios, so this only picks a typical one.
def _target_aspect(num_params: float) -> float:
    ramp = 64.0 + 64.0 * math.log10(max(num_params, 1e8) / 1e8) / math.log10(70.0)
    return min(128.0, ramp)


def _llama_candidates(target_params: float, vocab_size: int):
    """Shapes around the target: hidden in 128s below 2048 (head dim 64), in 256s above (head dim 128)."""
    gqa = target_params >= 30e9  # 8 KV heads from 30B up, as Llama 2 70B and Llama 3 use
    for hidden in [*range(128, 2048, 128), *range(2048, 32768 + 1, 256)]:
        heads = hidden // (128 if hidden >= 2048 else 64)
        if gqa and heads % 8:
            continue
        kv_heads = 8 if gqa else heads
        base = make_shape("llama", 1, hidden, heads, vocab_size, num_kv_heads=kv_heads)
        per_layer = base.layer_params()
        layers = round((target_params - (base.num_params - per_layer)) / per_layer)
        for num_layers in {max(1, layers - 1), max(1, layers), max(1, layers + 1)}:
            yield make_shape("llama", num_layers, hidden, heads, vocab_size, num_kv_heads=kv_heads)


def llama_shape_for(target_params: float, vocab_size: int, tolerance: float = 0.05) -> ModelShape:
    """The Llama-style shape whose exact count is near `target_params`, with typical proportions.

    Among shapes within `tolerance` of the target, the one closest to the usual width/depth ratio
    for its size wins (ties: the closer count); if none is within tolerance, the closest count.
    """
    if target_params <= 0:
        raise ConfigError(f"--params must be > 0, got {target_params:g}")
    aspect = _target_aspect(target_params)

    def score(shape: ModelShape) -> tuple[float, float]:
        miss = abs(shape.num_params / target_params - 1.0)
        ratio = abs(math.log(shape.hidden_size / shape.num_layers / aspect))
        return (0.0, ratio + miss) if miss <= tolerance else (miss, ratio)

    return min(_llama_candidates(target_params, vocab_size), key=score)
