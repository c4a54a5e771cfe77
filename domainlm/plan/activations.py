"""Shape + sequence + micro-batch + precision -> activation bytes kept for backward, and the peak at the loss.

Derived tensor by tensor from what the implementations save (a test counts them with saved-tensor
hooks, another measures the peak of a real forward+backward with the torch profiler), with e the
element size of the training dtype (2 for bf16/fp16, 4 for fp32); per token:

Llama (Hugging Face `LlamaDecoderLayer`, no dropout):
  RMSNorm, twice per layer:  4h (input upcast to fp32; in fp32 the input itself) + e·h (normalized,
                             for the weight's gradient) + e·h (output, the next matmul's input) + 4
                             (fp32 1/rms per token)
  attention, SDPA / flash:   e·(2h + 2·kv) (q, k and v at the KV width with GQA, the output, which
                             the output projection reads as a view) + 4a (fp32 log-sum-exp per head)
  attention, eager:          4e·h (q, k and v repeated to every head, the output projection's input)
                             + 4·a·s (fp32 softmax) + e·a·s (its 16-bit copy; none in fp32)
  SwiGLU MLP of width f:     4e·f (gate, SiLU(gate), up, their product)
GPT (Korthikanti et al. 2022, section 4.1, with dropout; 1-byte masks): attention 5e·h + h +
  (2e + 1)·a·s (eager), MLP e·h + 2e·f + h, two LayerNorms 2e·h; at e = 2 and f = 4h this is the
  paper's s·b·h·(34 + 5·a·s/h). FlashAttention stores no a·s scores.
So fp32 is not twice bf16: the RMSNorm's fp32 input and the fp32 softmax cost the same in both.

The loss (`ForCausalLMLoss` upcasts the logits to fp32 in every precision): cross-entropy saves the
fp32 log-softmax (4V) and its backward holds that, the NLL gradient (4V) and the log-softmax
gradient (4V) at once: 12V per token. For a small model with a large vocabulary this is the peak.
"""

from __future__ import annotations

from domainlm.plan.shapes import ModelShape

FP32 = 4
LOSS_BYTES_PER_VOCAB = 12  # fp32 log-softmax + NLL gradient + log-softmax gradient, live together
INDEX_BYTES = 8  # int64 token ids the embedding keeps for its gradient


def element_bytes(precision: str) -> int:
    """Bytes per activation element: 4 in fp32, 2 in mixed precision (bf16/fp16)."""
    return 4 if precision == "fp32" else 2


def _rmsnorm(h: int, e: int) -> int:
    return FP32 * h + 2 * e * h + FP32


def _llama_layer(shape: ModelShape, s: int, e: int, flash: bool) -> int:
    h, a, f = shape.hidden_size, shape.num_heads, shape.ffn_size
    kv = shape.num_kv_heads * shape.head_dim
    if flash:
        attention = e * (2 * h + 2 * kv) + FP32 * a
    else:
        attention = 4 * e * h + FP32 * a * s + (e * a * s if e < FP32 else 0)
    return 2 * _rmsnorm(h, e) + attention + 4 * e * f


def _gpt_layer(shape: ModelShape, s: int, e: int, flash: bool) -> int:
    h, a, f = shape.hidden_size, shape.num_heads, shape.ffn_size
    # QKV input, Q and K, V, output projection input (e each) + the 1-byte dropout mask.
    attention = 5 * e * h + h + (0 if flash else (2 * e + 1) * a * s)
    mlp = e * h + 2 * e * f + h  # MLP input, GeLU input and output, dropout mask
    return attention + mlp + 2 * e * h  # two LayerNorm inputs


def layer_bytes_per_token(shape: ModelShape, seq_len: int, precision: str, flash_attention: bool) -> int:
    """Bytes one transformer layer saves for backward, per token (module docstring)."""
    e = element_bytes(precision)
    layer = _llama_layer if shape.arch == "llama" else _gpt_layer
    return layer(shape, seq_len, e, flash_attention)


def layer_activation_bytes(
    shape: ModelShape, seq_len: int, micro_batch: int, flash_attention: bool, precision: str = "bf16"
) -> float:
    """Bytes one layer keeps for backward for a micro-batch of `micro_batch` sequences."""
    return float(seq_len * micro_batch * layer_bytes_per_token(shape, seq_len, precision, flash_attention))


def edge_bytes_per_token(shape: ModelShape, precision: str) -> int:
    """Outside the layers: token ids, RoPE tables (Llama), and the final norm as the layers' norms."""
    e = element_bytes(precision)
    if shape.arch == "llama":
        return INDEX_BYTES + 2 * e * shape.head_dim + _rmsnorm(shape.hidden_size, e)
    return INDEX_BYTES + 2 * e * shape.hidden_size


def loss_bytes(shape: ModelShape, tokens: int) -> float:
    """The peak of the loss's backward: 12 bytes per token per vocabulary entry, in every precision."""
    return float(tokens * shape.vocab_size * LOSS_BYTES_PER_VOCAB)


def activation_bytes(
    shape: ModelShape,
    seq_len: int,
    micro_batch: int,
    precision: str,
    checkpointing: bool,
    flash_attention: bool = True,
) -> float:
    """Peak activation bytes for one micro-batch: every layer's saved tensors (or, with full
    checkpointing, each layer's e·h input plus the one layer rebuilt at a time), the edges, and the
    loss's backward, which starts while all of them are still held."""
    tokens = seq_len * micro_batch
    layer = layer_bytes_per_token(shape, seq_len, precision, flash_attention)
    if checkpointing:
        per_token = shape.num_layers * element_bytes(precision) * shape.hidden_size + layer
    else:
        per_token = shape.num_layers * layer
    return float(tokens * (per_token + edge_bytes_per_token(shape, precision))) + loss_bytes(shape, tokens)
