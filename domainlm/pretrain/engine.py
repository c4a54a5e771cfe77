"""Recipe -> DeepSpeed JSON, and model + JSON -> a DeepSpeed engine. The only module that imports deepspeed.

`build_deepspeed_config` is the one place batch size, accumulation, precision, optimizer and ZeRO
stage are written, so they cannot disagree; the same dict drives our loop, `--dry-run` and the HF
Trainer baseline of benchmarks/bench_train.py.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from domainlm.errors import ConfigError
from domainlm.pretrain import cpu_comm
from domainlm.pretrain.config import Recipe, global_batch_sequences, gradient_accumulation_steps

# DeepSpeed prints a line every `steps_per_print` steps; our loop logs its own, so silence it.
_NEVER = 10**12


def build_deepspeed_config(recipe: Recipe, seq_len: int, world_size: int) -> dict[str, Any]:
    """The DeepSpeed JSON for `recipe` on `world_size` ranks (ConfigError if the batch does not divide)."""
    train, ds, opt = recipe.train, recipe.deepspeed, recipe.optimizer
    accumulation = gradient_accumulation_steps(train, seq_len, world_size)
    _check_bf16_stage(train.precision, ds.zero_stage)
    zero: dict[str, Any] = {"stage": ds.zero_stage}
    if ds.zero_stage > 0:
        zero.update(
            overlap_comm=ds.overlap_comm,
            contiguous_gradients=True,
            reduce_bucket_size=ds.reduce_bucket_size,
        )
    if ds.zero_stage == 3:
        zero.update(
            stage3_prefetch_bucket_size=ds.stage3_prefetch_bucket_size,
            stage3_param_persistence_threshold=int(1e5),
            # The export gathers the full 16-bit weights on rank 0 (engine.full_state_dict).
            stage3_gather_16bit_weights_on_model_save=True,
        )
    if ds.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if ds.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    config = {
        "train_batch_size": global_batch_sequences(train, seq_len),
        "train_micro_batch_size_per_gpu": train.micro_batch_size,
        "gradient_accumulation_steps": accumulation,
        "gradient_clipping": opt.grad_clip,
        "optimizer": {
            "type": "AdamW",
            "params": {
                "lr": opt.lr,
                "betas": list(opt.betas),
                "eps": opt.eps,
                "weight_decay": opt.weight_decay,
                # torch's AdamW (foreach) needs no JIT-built op; offload needs DeepSpeedCPUAdam.
                "torch_adam": not ds.offload_optimizer,
            },
        },
        "bf16": {"enabled": train.precision == "bf16"},
        "fp16": {"enabled": train.precision == "fp16", "loss_scale": 0, "initial_scale_power": 16},
        "zero_optimization": zero,
        "zero_allow_untested_optimizer": True,
        "steps_per_print": _NEVER,
        "wall_clock_breakdown": False,
    }
    if train.precision == "bf16":
        config.update(BF16_FP32_GRADIENTS)
    return config


# bf16 keeps 8 bits of mantissa: summing micro-batch gradients (and ranks' gradients) in it loses the
# small ones. Megatron (accumulate_allreduce_grads_in_fp32) and torchtitan (FSDP reduce_dtype fp32)
# accumulate and reduce in fp32; so do we. Cost: the gradient buffers (ZeRO: this rank's partition;
# ZeRO-1 keeps a full fp32 gradient copy, 4 bytes/parameter) and the reduce traffic double.
BF16_FP32_GRADIENTS: dict[str, Any] = {
    "data_types": {"grad_accum_dtype": "fp32"},
    "communication_data_type": "fp32",
}


def _check_bf16_stage(precision: str, zero_stage: int) -> None:
    """DeepSpeed accumulates bf16 gradients in fp32 only under ZeRO (at stage 0 DeepSpeed refuses it)."""
    if precision == "bf16" and zero_stage == 0:
        raise ConfigError(
            "deepspeed.zero_stage 0 with train.precision bf16: DeepSpeed accumulates bf16 gradients in fp32 "
            "only under ZeRO, so they would be summed in bf16; use deepspeed.zero_stage 1 (the memory of "
            "DDP with optimizer states sharded) or train.precision fp32"
        )


def optimizer_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups: weight decay on matrices (linear and embedding weights) only.

    Norm gains and biases (1-D) are left undecayed, as nanoGPT's configure_optimizers and Megatron's
    get_param_groups do: decaying a norm's gain pulls it towards 0, which scales the layer down
    instead of regularizing it. Under ZeRO-3 construction `p.ds_shape` holds the real shape.
    """
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            shape = getattr(param, "ds_shape", param.shape)
            (decay if len(shape) >= 2 else no_decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def lr_multiplier(step: int, warmup_steps: int, total_steps: int, min_ratio: float, decay: str) -> float:
    """Fraction of the peak lr for optimizer step `step` (0-based): linear warmup, then decay to min_ratio."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if decay == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    shape = 0.5 * (1.0 + math.cos(math.pi * progress)) if decay == "cosine" else 1.0 - progress
    return min_ratio + (1.0 - min_ratio) * shape


def build_scheduler_fn(recipe: Recipe, total_steps: int) -> Callable[[torch.optim.Optimizer], Any]:
    """A DeepSpeed `lr_scheduler` callable: optimizer -> LambdaLR over `lr_multiplier`."""
    opt = recipe.optimizer

    def make(optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: lr_multiplier(step, opt.warmup_steps, total_steps, opt.min_lr_ratio, opt.decay),
        )

    return make


def init_distributed(device: str) -> tuple[int, int]:
    """Join the process group the launcher set up; returns (rank, world_size)."""
    import deepspeed

    if device == "auto":  # a remote launch: this rank's node decides, not the (maybe GPU-less) launch host
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    deepspeed.init_distributed(dist_backend="gloo" if device == "cpu" else "nccl")
    rank, world_size = torch.distributed.get_rank(), torch.distributed.get_world_size()
    if device == "cpu":  # one rank maps a buffer too
        cpu_comm.release_own_shm_buffer(rank)
    return rank, world_size


def initialize(model: torch.nn.Module, ds_config: dict[str, Any], scheduler_fn: Callable) -> Any:
    """Wrap `model` in a DeepSpeed engine (ZeRO-3 partitions it here); returns the engine."""
    import deepspeed

    weight_decay = ds_config["optimizer"]["params"]["weight_decay"]
    engine, _, _, _ = deepspeed.initialize(
        model=model,
        model_parameters=optimizer_groups(model, weight_decay),
        config=ds_config,
        lr_scheduler=scheduler_fn,
    )
    return engine


def compile_engine(engine: Any) -> None:
    """torch.compile the wrapped model through DeepSpeed (keeps engine.module the HF model for export)."""
    engine.compile()


def accelerator_name() -> str:
    """'cpu' or 'cuda' as DeepSpeed resolved it."""
    from deepspeed.accelerator import get_accelerator

    return get_accelerator().device_name()


def device_of(engine: Any) -> torch.device:
    return torch.device(engine.device)


def grad_norm(engine: Any) -> float | None:
    """Global grad norm of the last optimizer step (None before the first); a host sync on GPU."""
    value = engine.get_global_grad_norm()
    if value is None:
        return None
    return float(value.item() if torch.is_tensor(value) else value)


def skipped_steps(engine: Any) -> int:
    """Optimizer steps DeepSpeed skipped so far because the gradients overflowed (inf/NaN): fp16's
    loss-scale search, and bf16 under ZeRO (bf16.check_grad_overflow). Restored on resume."""
    return int(engine.skipped_steps)


def peak_memory_bytes(reset: bool = True) -> int:
    """Peak memory since the last reset, through DeepSpeed's accelerator: the GPU allocator's peak; on
    the CPU, the largest resident set size DeepSpeed sampled (it samples when asked: a lower bound)."""
    from deepspeed.accelerator import get_accelerator

    accelerator = get_accelerator()
    peak = int(accelerator.max_memory_allocated())
    if reset:
        accelerator.reset_peak_memory_stats()
    return peak


def save_checkpoint(engine: Any, root: Path, tag: str, client_state: dict[str, Any]) -> None:
    """Model, optimizer, scheduler (and ZeRO partitions) of every rank into root/tag; collective."""
    engine.save_checkpoint(str(root), tag=tag, client_state=client_state, save_latest=False)


def load_checkpoint(engine: Any, root: Path, tag: str) -> dict[str, Any]:
    """Restore what `save_checkpoint` wrote; returns the client state. Collective."""
    path, client_state = engine.load_checkpoint(
        str(root), tag=tag, load_optimizer_states=True, load_lr_scheduler_states=True
    )
    if path is None:
        raise RuntimeError(f"DeepSpeed found no checkpoint at {root}/{tag}")
    return client_state or {}


def full_state_dict(engine: Any) -> dict[str, torch.Tensor] | None:
    """The whole model's weights on rank 0 (None elsewhere). Collective under ZeRO-3, which gathers
    one layer at a time so rank 0 never holds more than the full model plus one layer on the device."""
    if engine.zero_optimization_partition_weights():
        return engine._zero3_consolidated_16bit_state_dict()
    if torch.distributed.get_rank() != 0:
        return None
    return {k: v.detach().cpu() for k, v in engine.module.state_dict().items()}


def barrier() -> None:
    torch.distributed.barrier()


def shutdown() -> None:
    """Leave the process group cleanly; exiting with live gloo threads can abort the process."""
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
