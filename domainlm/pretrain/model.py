"""ModelConfig + tokenizer facts -> a transformers model (Llama, BERT/RoBERTa, T5), from scratch or init_from.

Nothing is downloaded: a from-scratch model is built from a transformers config, a continued-pretraining
model is read from a local HF directory. Attention runs through `scaled_dot_product_attention` (SDPA),
which dispatches to flash / memory-efficient kernels on GPU.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    BertConfig,
    LlamaConfig,
    PretrainedConfig,
    PreTrainedModel,
    RobertaConfig,
    T5Config,
)

from domainlm.architectures import KIND_OF_ARCH, auto_class
from domainlm.errors import ConfigError
from domainlm.plan.shapes import llama_ffn_size
from domainlm.pretrain.config import ModelConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TokenIds:
    """What the model config needs from the tokenizer."""

    vocab_size: int
    eos_token_id: int
    pad_token_id: int
    bos_token_id: int | None = None


def build_model_config(cfg: ModelConfig, ids: TokenIds, seq_len: int) -> PretrainedConfig:
    """A transformers config for `cfg.arch` with a row per token, padded (vocab_init.rows_multiple)."""
    from domainlm.pretrain.vocab_init import padded_rows

    max_pos = cfg.max_position_embeddings or seq_len
    rows = padded_rows(ids.vocab_size, cfg)  # tensor-core shapes; the tokenizer never yields the extra ids
    common = dict(vocab_size=rows, pad_token_id=ids.pad_token_id, eos_token_id=ids.eos_token_id)
    if cfg.arch == "llama":
        return LlamaConfig(
            hidden_size=cfg.hidden_size,
            intermediate_size=cfg.intermediate_size or llama_ffn_size(cfg.hidden_size),
            num_hidden_layers=cfg.num_layers,
            num_attention_heads=cfg.num_heads,
            num_key_value_heads=cfg.num_kv_heads or cfg.num_heads,
            max_position_embeddings=max_pos,
            rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
            tie_word_embeddings=cfg.tie_embeddings,
            initializer_range=cfg.init_std,
            attention_dropout=cfg.dropout,
            bos_token_id=ids.bos_token_id,
            use_cache=False,
            **common,
        )
    if cfg.arch in ("bert", "roberta"):
        config_cls = BertConfig if cfg.arch == "bert" else RobertaConfig
        # RoBERTa numbers positions from pad_token_id + 1, so it needs two extra position rows.
        extra = 2 + ids.pad_token_id if cfg.arch == "roberta" else 0
        return config_cls(
            hidden_size=cfg.hidden_size,
            num_hidden_layers=cfg.num_layers,
            num_attention_heads=cfg.num_heads,
            intermediate_size=cfg.intermediate_size or 4 * cfg.hidden_size,
            max_position_embeddings=max_pos + extra,
            hidden_dropout_prob=cfg.dropout,
            attention_probs_dropout_prob=cfg.dropout,
            initializer_range=cfg.init_std,
            tie_word_embeddings=cfg.tie_embeddings,
            **common,
        )
    return T5Config(
        d_model=cfg.hidden_size,
        d_kv=cfg.hidden_size // cfg.num_heads,
        d_ff=cfg.intermediate_size or 4 * cfg.hidden_size,
        num_layers=cfg.num_layers,
        num_decoder_layers=cfg.num_layers,
        num_heads=cfg.num_heads,
        dropout_rate=cfg.dropout,
        initializer_factor=cfg.init_std / 0.02,
        tie_word_embeddings=cfg.tie_embeddings,
        decoder_start_token_id=ids.pad_token_id,
        feed_forward_proj="gated-gelu",
        use_cache=False,
        **common,
    )


def build_model(cfg: ModelConfig, ids: TokenIds, seq_len: int, seed: int) -> PreTrainedModel:
    """From scratch (seeded, identical on every rank) or from `cfg.init_from`; fp32 weights on the CPU.

    DeepSpeed casts to bf16/fp16 and moves to the device; ZeRO-3 partitions at `initialize`.
    """
    torch.manual_seed(seed)
    auto_cls = auto_class(KIND_OF_ARCH[cfg.arch])  # the class that loads the export too (contract E)
    if cfg.init_from is not None:
        return load_pretrained(cfg, auto_cls)
    config = build_model_config(cfg, ids, seq_len)
    model = auto_cls.from_config(config, attn_implementation=cfg.attention, dtype=torch.float32)
    if cfg.arch == "llama":
        from domainlm.pretrain.construct import init_weights

        init_weights(model, seed)  # seeded per module: the weights a ZeRO-3 sharded construction makes
    if cfg.arch == "t5" and not cfg.tie_embeddings:
        # T5 v1.1 draws the untied head with std 1 (tuned for Adafactor): logits start ~sqrt(H) wide and
        # the first loss is ~40 nats. Under AdamW start it like the other heads, at init_std.
        torch.nn.init.normal_(model.lm_head.weight, std=cfg.init_std)
    return model


def load_pretrained(cfg: ModelConfig, auto_cls: type) -> PreTrainedModel:
    """A local HF checkpoint for continued pretraining; its architecture must match `model.arch`."""
    path = Path(cfg.init_from)
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"model.init_from {path}: not an HF model directory (no config.json); give a local dir"
        )
    config = AutoConfig.from_pretrained(path)
    family = config.model_type if config.model_type in KIND_OF_ARCH else None
    if family is None and cfg.arch != "llama":
        raise ConfigError(
            f"model.init_from {path}: model_type {config.model_type!r} does not fit arch {cfg.arch!r}"
        )
    if family is not None and family != cfg.arch:
        raise ConfigError(
            f"model.init_from {path}: model_type {config.model_type!r} does not match model.arch "
            f"{cfg.arch!r}; set model.arch: {family}"
        )
    log.info("continued pretraining from %s (%s)", path, config.model_type)
    return auto_cls.from_pretrained(path, attn_implementation=cfg.attention, dtype=torch.float32)


def count_params(model: torch.nn.Module) -> int:
    return sum(p.ds_numel if hasattr(p, "ds_numel") else p.numel() for p in model.parameters())


def matmul_params(model: PreTrainedModel) -> int:
    """Parameters that take part in matmuls (PaLM's N): all but input embeddings that are only looked up.

    A tied embedding is the LM head too, so it counts once; position/type embeddings never count.
    """
    total = count_params(model)
    config = model.config
    tied = bool(getattr(config, "tie_word_embeddings", False))
    lookups = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Embedding):
            is_token_table = module is model.get_input_embeddings()
            if not (is_token_table and tied):
                lookups += count_params(module)
    return total - lookups


def attention_shape(model: PreTrainedModel) -> tuple[int, int]:
    """(layers that attend over the sequence, hidden size) for the 12·L·H·T term of flops_per_token."""
    config = model.config
    if config.model_type == "t5":
        # Encoder self-attention, decoder self- and cross-attention: ~3 attention blocks per layer pair.
        return config.num_layers + 2 * config.num_decoder_layers, config.num_heads * config.d_kv
    return config.num_hidden_layers, config.hidden_size
