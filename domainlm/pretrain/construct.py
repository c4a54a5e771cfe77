"""Recipe + ZeRO-3 -> a model built sharded: each rank materializes only its partition of every parameter.

Built whole, a model costs every rank the full fp32 weights on the host (50B: 200 GB per rank, 1.6 TB
per 8-GPU node) and DeepSpeed then moves it whole to each GPU before partitioning. Under
`deepspeed.zero.Init` each module's parameters are partitioned as soon as the module is constructed,
so a rank holds 1/world of the weights (plus one module's full tensors while it is built).

Initialization is per module with a seed derived from (train.seed, module name): rank 0 fills each
gathered module and DeepSpeed scatters it, so the weights do not depend on the construction path, the
order of construction or the world size; `init_weights` gives the unsharded path the same numbers.
`init_from` checkpoints are read one safetensors tensor at a time by rank 0 into the gathered
parameter (the others read only the file headers), never a full state dict per rank.
"""

from __future__ import annotations

import contextlib
import json
import logging
import zlib
from pathlib import Path
from typing import Any

import torch

from domainlm.errors import ConfigError
from domainlm.pretrain.config import Recipe

log = logging.getLogger(__name__)


def applies(recipe: Recipe) -> bool:
    """Sharded construction: ZeRO-3 Llama models whose embedding rows are the tokenizer's (no added tokens
    map, no row padding: those rewrite the whole embedding matrix, which is built whole instead)."""
    model = recipe.model
    return (
        recipe.deepspeed.zero_init
        and recipe.deepspeed.zero_stage == 3
        and model.arch == "llama"
        and model.added_tokens_map is None
        and model.pad_vocab_to_multiple_of is None
    )


def _module_owners(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module, Any]]:
    """(qualified name, module, the PreTrainedModel whose `_init_weights` applies), children first."""
    from transformers import PreTrainedModel

    out = []

    def walk(module: torch.nn.Module, owner: Any, prefix: str) -> None:
        for name, child in module.named_children():
            walk(child, child if isinstance(child, PreTrainedModel) else owner, f"{prefix}{name}.")
        out.append((prefix.rstrip("."), module, owner))

    walk(model, model, "")
    return out


def init_weights(model: torch.nn.Module, seed: int, sharded: bool = False) -> None:
    """HF's own `_init_weights` for every module, seeded by (seed, module name): the same weights whether
    the model is whole or partitioned (then each module is gathered on rank 0 and scattered back)."""
    for name, module, owner in _module_owners(model):
        params = list(module.parameters(recurse=False))
        if not params:
            continue
        gathered = None
        if sharded:
            import deepspeed

            gathered = deepspeed.zero.GatheredParameters(params, modifier_rank=0)
        with gathered or contextlib.nullcontext(), torch.no_grad():
            for param in params:
                param._is_hf_initialized = False  # transformers' init functions skip flagged tensors
            torch.manual_seed(zlib.crc32(f"{seed}:{name}".encode()))
            owner._init_weights(module)


def build_sharded(recipe: Recipe, ids: Any, seq_len: int, ds_config: dict[str, Any], rank: int) -> Any:
    """The recipe's model constructed under zero.Init: each rank holds only its partitions."""
    import deepspeed
    from transformers import AutoConfig
    from transformers import initialization as hf_init

    from domainlm.architectures import KIND_OF_ARCH, auto_class
    from domainlm.pretrain.model import build_model_config

    cfg = recipe.model
    auto_cls = auto_class(KIND_OF_ARCH[cfg.arch])
    config = (
        AutoConfig.from_pretrained(cfg.init_from) if cfg.init_from else build_model_config(cfg, ids, seq_len)
    )
    # dtype from the DeepSpeed config (fp32 master weights are made by the engine): passing dtype= to
    # zero.Init is ignored on accelerators without fp16 (DeepSpeed 0.19 operator precedence).
    with deepspeed.zero.Init(config_dict_or_path=ds_config), hf_init.no_init_weights():
        model = auto_cls.from_config(config, attn_implementation=cfg.attention, dtype=torch.float32)
    # Under zero.Init transformers leaves a tied LM head as its own (partitioned) parameter: tie it here,
    # before any weights are written, or the run trains (and exports) an untied model it did not ask for.
    model.tie_weights()
    if cfg.init_from:
        load_safetensors_sharded(model, Path(cfg.init_from), rank)
    else:
        init_weights(model, recipe.train.seed, sharded=True)
    from domainlm.pretrain.speed import apply_model_switches

    apply_model_switches(model, recipe)  # Liger kernels, full or selective checkpointing
    return model


def _checkpoint_name(key: str, names: dict[str, Any], prefix: str) -> str | None:
    """A safetensors key as a parameter name of the model (with or without the base model prefix)."""
    for candidate in (key, f"{prefix}.{key}", key.removeprefix(f"{prefix}.")):
        if candidate in names:
            return candidate
    return None


def load_safetensors_sharded(model: Any, path: Path, rank: int) -> None:
    """Collective: copy `path`'s safetensors into the partitioned model one tensor at a time; rank 0 reads
    each tensor (the others read the file headers only, to enter the same gathers in the same order)."""
    import deepspeed
    from safetensors import safe_open

    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise ConfigError(
            f"model.init_from {path}: no *.safetensors files; ZeRO-3 loads safetensors shard by shard "
            "(save the model with safe_serialization=True)"
        )
    params = dict(model.named_parameters())
    loaded: set[str] = set()
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for key in sorted(handle.keys()):
                name = _checkpoint_name(key, params, model.base_model_prefix)
                if name is None or name in loaded:
                    continue  # buffers saved by older versions (rotary inv_freq), or a tied copy
                param = params[name]
                with deepspeed.zero.GatheredParameters([param], modifier_rank=0), torch.no_grad():
                    if rank == 0:
                        param.data.copy_(handle.get_tensor(key).to(param.dtype))
                loaded.add(name)
    missing = sorted(set(params) - loaded)
    if missing and not (missing == ["lm_head.weight"] and model.config.tie_word_embeddings):
        raise ConfigError(
            f"model.init_from {path}: the safetensors files lack {len(missing)} parameter(s) of the model, "
            f"e.g. {missing[0]}; give a complete HF model directory"
        )


def param_bytes(model: torch.nn.Module) -> dict[str, int]:
    """Parameter bytes this rank holds, and the full model's: the measure of sharded construction."""
    resident = full = 0
    for param in model.parameters():
        if hasattr(param, "ds_tensor"):
            resident += param.ds_tensor.numel() * param.ds_tensor.element_size()
            full += param.ds_numel * param.ds_tensor.element_size()
        else:
            resident += param.numel() * param.element_size()
            full += param.numel() * param.element_size()
    return {"resident_param_bytes": resident, "full_param_bytes": full}


def record(run_dir: Path, rank: int, model: torch.nn.Module, sharded: bool) -> None:
    """logs/construct_rank<r>.json: what this rank holds after construction (read by tests and people)."""
    measured = {"rank": rank, "sharded": sharded, **param_bytes(model)}
    log.info(
        "constructed %s: %.1f MiB of %.1f MiB parameters on this rank",
        "sharded (zero.Init)" if sharded else "whole",
        measured["resident_param_bytes"] / 2**20,
        measured["full_param_bytes"] / 2**20,
    )
    (Path(run_dir) / "logs" / f"construct_rank{rank}.json").write_text(json.dumps(measured) + "\n")
