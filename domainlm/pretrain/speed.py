"""Recipe speed switches -> what they change in the model, the optimizer and the DeepSpeed JSON.

The switches (all exact: the same loss as the plain path up to float rounding, tested on the CPU
where the switch runs there, on a GPU when one is present):
- `model.pad_vocab_to_multiple_of` (default 128, resolved by vocab_init.rows_multiple): embedding and
  head matmuls get tensor-core shapes (50,257 -> 50,304 rows for GPT-2's vocabulary). The extra rows
  are never an input; the export drops them (`trimmed_for_export`), so the exported model has one row
  per token and greedy generation is unchanged.
- Fused AdamW on CUDA (`optimizer_params`): torch.optim.AdamW(fused=True), one kernel for the whole
  update instead of foreach's several, through DeepSpeed's torch_adam path (which passes unknown
  params to torch). DeepSpeed's own FusedAdam needs a JIT-built op; torch's fused kernel ships with
  torch. CPU Offload keeps DeepSpeedCPUAdam.
- `model.liger_kernels` (the `gpu` extra): Liger's Triton RMSNorm, RoPE and SwiGLU for Llama. Its
  fused linear cross-entropy is off: the training loop scores per-token losses from the logits
  (per-source loss), which that kernel never materializes.
- `train.compile: per_layer`: torch.compile each decoder layer instead of the whole model (what
  torchtitan does): one small graph compiled once and reused by every layer, so start-up is seconds,
  not minutes, and a graph break in the head does not split the layers.
- `deepspeed.activation_checkpointing: selective`: PyTorch's selective activation checkpointing
  (torch.utils.checkpoint.create_selective_checkpoint_contexts, torchtitan's "op" mode): inside each
  checkpointed layer the outputs of matmuls and attention are kept and only the cheap ops (norms,
  SwiGLU, RoPE, adds) are recomputed: the FLOPs of the recompute are a few percent of a layer's,
  against ~1/3 more step FLOPs for full checkpointing; it saves less memory than full.

No GPU was lent to the session that wrote this: none of these is measured for speed yet
(`benchmarks/bench_train.py --gpu-mfu` is the measurement).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import Iterator
from typing import Any

import torch

from domainlm.errors import ConfigError
from domainlm.pretrain.config import Recipe

log = logging.getLogger(__name__)


def check_switches(recipe: Recipe, device: str) -> None:
    """Before launch: a switch this host cannot run is one line here, not a traceback on every rank.
    `device` is the resolved launch device (cpu, cuda, or auto when each rank resolves it)."""
    if recipe.model.liger_kernels:
        if recipe.model.arch != "llama":
            raise ConfigError(
                f"model.liger_kernels: Liger's kernels are wired for llama, not arch {recipe.model.arch!r}; "
                "set model.liger_kernels: false"
            )
        if device == "cpu":
            raise ConfigError(
                "model.liger_kernels: Liger's kernels are Triton GPU kernels, and launch.device is cpu; "
                "set model.liger_kernels: false or train on GPUs"
            )
        if importlib.util.find_spec("liger_kernel") is None:
            raise ConfigError(
                "model.liger_kernels: true but the liger-kernel package is not installed; "
                "pip install 'domainlm[gpu]' (or liger-kernel), or set model.liger_kernels: false"
            )


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The repeated transformer blocks (Llama: model.layers; BERT: encoder.layer; T5: both stacks)."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    return [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]


def apply_model_switches(model: torch.nn.Module, recipe: Recipe) -> None:
    """Before deepspeed.initialize: Liger kernels, full or selective activation checkpointing."""
    if recipe.model.liger_kernels:
        from liger_kernel.transformers import apply_liger_kernel_to_llama

        apply_liger_kernel_to_llama(
            rope=True, rms_norm=True, swiglu=True, cross_entropy=False, fused_linear_cross_entropy=False,
            model=model,
        )  # fmt: skip
    checkpointing = recipe.deepspeed.activation_checkpointing
    if checkpointing:
        kwargs: dict[str, Any] = {"use_reentrant": False}
        if checkpointing == "selective":
            kwargs["context_fn"] = _selective_contexts
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def _saved_ops() -> set[Any]:
    """The expensive ops whose outputs selective checkpointing keeps (the ones present in this torch)."""
    aten = torch.ops.aten
    names = ["mm", "addmm", "bmm", "_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
             "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_flash_attention_for_cpu"]  # fmt: skip
    return {getattr(aten, name).default for name in names if hasattr(aten, name)}


def _keep_matmuls(ctx: Any, op: Any, *args: Any, **kwargs: Any) -> Any:
    from torch.utils.checkpoint import CheckpointPolicy

    return CheckpointPolicy.MUST_SAVE if op in _SAVED_OPS else CheckpointPolicy.PREFER_RECOMPUTE


_SAVED_OPS = _saved_ops()


def _selective_contexts() -> Any:
    from torch.utils.checkpoint import create_selective_checkpoint_contexts

    return create_selective_checkpoint_contexts(_keep_matmuls)


def compile_layers(model: torch.nn.Module, backend: str = "inductor") -> int:
    """`train.compile: per_layer`: compile each decoder layer in place; returns how many. Identical
    layers share one compiled graph (dynamo caches by code), so compile time does not grow with depth."""
    layers = decoder_layers(model)
    for layer in layers:
        layer.compile(backend=backend)
    return len(layers)


def optimizer_params(ds_config: dict[str, Any], accelerator: str) -> dict[str, Any]:
    """This rank's DeepSpeed JSON with torch's fused AdamW on CUDA (torch_adam path only; CPU offload
    keeps DeepSpeedCPUAdam). The parent writes the JSON before any rank knows its device."""
    params = ds_config["optimizer"]["params"]
    if accelerator != "cuda" or not params.get("torch_adam"):
        return ds_config
    return {**ds_config, "optimizer": {**ds_config["optimizer"], "params": {**params, "fused": True}}}


@contextlib.contextmanager
def trimmed_for_export(
    model: Any, state_dict: dict[str, torch.Tensor], vocab_size: int
) -> Iterator[dict[str, torch.Tensor]]:
    """The `state_dict` to save with `model.save_pretrained(state_dict=...)`, without the padding rows
    past the tokenizer's `vocab_size` (embedding, head, and a head bias), and `model.config.vocab_size`
    set to match while saving: the export has one row per token, as the tokenizer it ships with. The
    model itself is untouched (under ZeRO-3 its weights are partitions), its config restored after."""
    rows = model.get_input_embeddings().weight
    rows = rows.ds_shape[0] if hasattr(rows, "ds_shape") else rows.shape[0]
    if rows <= vocab_size:
        yield state_dict
        return
    vocab_modules = [model.get_input_embeddings(), model.get_output_embeddings()]
    names = {
        f"{prefix}.{name}" if prefix else name
        for prefix, module in model.named_modules(remove_duplicate=False)
        if any(module is m for m in vocab_modules if m is not None)
        for name in ("weight", "bias")
    }
    trimmed = {
        key: value[:vocab_size] if key in names and value.shape[0] == rows else value
        for key, value in state_dict.items()
    }
    padded = model.config.vocab_size
    model.config.vocab_size = vocab_size
    try:
        yield trimmed
    finally:
        model.config.vocab_size = padded
