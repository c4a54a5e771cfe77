"""`--model [NAME=]DIR` -> a validated local Hugging Face model: its kind, context, tokenizer, weights.

Inspection (config + tokenizer) is cheap and done for every model before any evaluation starts,
so a bad directory fails in a second; weights are loaded one model at a time.
Kinds: `causal` (decoder-only), `masked` (encoder-only MLM), `seq2seq` (encoder-decoder, T5 style).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from domainlm.architectures import ModelKind, auto_class
from domainlm.errors import ConfigError, DataError, ResourceError
from domainlm.naming import split_named

# Config fields that hold the longest input a model accepts, in the order HF model families use them.
_CONTEXT_FIELDS = ("max_position_embeddings", "n_positions", "n_ctx", "seq_length", "max_sequence_length")
# Models with relative positions (T5) state no context; this is the length they were trained at.
_RELATIVE_POSITION_CONTEXT = 512
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass(frozen=True)
class ModelSpec:
    """A name for the report and the directory it is loaded from."""

    name: str
    path: Path


@dataclass
class ModelInfo:
    """Everything known about a model before its weights are loaded."""

    spec: ModelSpec
    kind: ModelKind
    context_length: int
    config: Any
    tokenizer: Any


def parse_model_specs(values: list[str]) -> list[ModelSpec]:
    """`DIR` or `NAME=DIR` values -> specs with unique names; each DIR must hold a config.json."""
    if not values:
        raise ConfigError("--model: give at least one local model directory (DIR or NAME=DIR)")
    specs: list[ModelSpec] = []
    for value in values:
        name, raw_path = split_named(value, "--model", "DIR")
        path = Path(raw_path).expanduser()
        name = name or path.resolve().name or str(path)  # a model dir keeps its dots: llama-3.2-1b
        if not (path / "config.json").is_file():
            raise ConfigError(
                f"--model {value!r}: {path} is not a local Hugging Face model directory (no config.json); "
                "pass a directory exported by `domainlm pretrain` or saved with save_pretrained"
            )
        if any(spec.name == name for spec in specs):
            raise ConfigError(f"--model: name {name!r} is used twice; give each model a name with NAME=DIR")
        specs.append(ModelSpec(name=name, path=path))
    return specs


def model_kind(config: Any) -> ModelKind:
    """Which objective scores this model, from its config (architectures first, then model type)."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
        MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES,
    )

    if getattr(config, "is_encoder_decoder", False):
        return "seq2seq"
    architecture = (getattr(config, "architectures", None) or [""])[0]
    if architecture.endswith("ForMaskedLM"):
        return "masked"
    if architecture.endswith(("ForCausalLM", "LMHeadModel")):
        return "causal"
    if config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return "causal"
    if config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return "masked"
    if config.model_type in MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES:
        return "seq2seq"
    raise DataError(
        f"model type {config.model_type!r} ({architecture or 'no architectures'}) is not a causal, "
        "masked or seq2seq language model; domainlm eval scores language models only"
    )


def context_length(config: Any, kind: ModelKind) -> int:
    """The longest input the model accepts (its position table), or 512 for relative positions."""
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    for field in _CONTEXT_FIELDS:
        value = getattr(text_config, field, None)
        if isinstance(value, int) and value > 0:
            if config.model_type in ("roberta", "xlm-roberta", "camembert"):
                # RoBERTa numbers positions from pad_token_id + 1: those first rows are never used.
                return value - (config.pad_token_id or 0) - 1
            return value
    return _RELATIVE_POSITION_CONTEXT


def inspect_model(spec: ModelSpec) -> ModelInfo:
    """Load config and tokenizer (no weights); a broken directory is a one-line DataError."""
    from transformers import AutoConfig, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(spec.path, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(
            f"--model {spec.name}: cannot read {spec.path / 'config.json'} ({_first_line(exc)})"
        ) from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(spec.path, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(
            f"--model {spec.name}: no usable tokenizer in {spec.path} ({_first_line(exc)}); "
            "save the tokenizer next to the weights"
        ) from None
    kind = model_kind(config)
    return ModelInfo(
        spec=spec, kind=kind, context_length=context_length(config, kind), config=config, tokenizer=tokenizer
    )


def load_weights(info: ModelInfo, device: Any, dtype: Any) -> Any:
    """The model in eval mode on `device` in `dtype`."""
    try:
        model = auto_class(info.kind).from_pretrained(
            info.spec.path, config=info.config, dtype=dtype, local_files_only=True
        )
    except (OSError, ValueError) as exc:
        raise DataError(
            f"--model {info.spec.name}: cannot load weights from {info.spec.path} ({_first_line(exc)})"
        ) from None
    return model.to(device).eval()


def resolve_device(name: str) -> Any:
    """'auto' -> cuda when available else cpu; asking for cuda without one is a ResourceError."""
    import torch

    if name not in DEVICES:
        raise ConfigError(f"--device {name!r}: choose one of {', '.join(DEVICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ResourceError("--device cuda: no CUDA device is visible to torch; use --device cpu or auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def resolve_dtype(name: str, device: Any) -> Any:
    """'auto' -> float32 on CPU (exact losses), bfloat16 on a GPU that supports it, else float16."""
    import torch

    if name not in DTYPES:
        raise ConfigError(f"--dtype {name!r}: choose one of {', '.join(DTYPES)}")
    if name != "auto":
        return getattr(torch, name)
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def quiet_transformers() -> None:
    """No transformers progress bars ("Loading weights"): the CLI draws its own progress."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
