"""A prepared run -> what `pretrain --dry-run` reports: the resolved recipe, seq_len and tokens per step with
where each came from, the tokenizer, the DeepSpeed JSON, the exact command and the planner's estimate."""

from __future__ import annotations

from typing import Any

from domainlm.pretrain import construct
from domainlm.pretrain.launch import format_command
from domainlm.pretrain.run import PreparedRun


def recipe_shape(prepared: PreparedRun) -> Any:
    """The planner's shape of the recipe's Llama at the tokenizer's vocabulary."""
    from domainlm.plan.shapes import make_shape

    model = prepared.recipe.model
    return make_shape(
        "llama",
        model.num_layers,
        model.hidden_size,
        model.num_heads,
        prepared.inputs.tokenizer.vocab_size,
        num_kv_heads=model.num_kv_heads,
        ffn_size=model.intermediate_size,
        tie_embeddings=model.tie_embeddings,
    )


def planner_estimate(prepared: PreparedRun) -> dict[str, Any]:
    """Memory per GPU, step time and total time from domainlm.plan for the recipe's target GPU."""
    from domainlm.plan.flops import hardware_flops_per_token, training_seconds
    from domainlm.plan.hardware import get_gpu
    from domainlm.plan.memory import Strategy, estimate_memory
    from domainlm.plan.planner import DEFAULT_HFU

    recipe, model = prepared.recipe, prepared.recipe.model
    if model.arch != "llama" or model.init_from is not None:
        return {"note": "the planner models from-scratch Llama shapes over a built mix; no estimate"}
    seq_len, ds = prepared.seq_len.value, recipe.deepspeed
    gpu = get_gpu(recipe.launch.gpu_type)
    shape = recipe_shape(prepared)
    strategy = Strategy(f"zero{ds.zero_stage}", ds.zero_stage, ds.offload_optimizer, ds.offload_params)
    gpus = prepared.spec.world_size
    memory = estimate_memory(
        shape,
        seq_len=seq_len,
        micro_batch=recipe.train.micro_batch_size,
        precision=recipe.train.precision,
        num_gpus=gpus,
        strategy=strategy,
        checkpointing=ds.activation_checkpointing,
        gpu_memory_bytes=gpu.memory_bytes,
        gpus_per_node=prepared.spec.num_gpus,
        zero_init=construct.applies(recipe),
    )
    # The planner's assumption is hardware FLOPs utilization: the recompute forward that activation
    # checkpointing adds is charged as time, exactly as `domainlm plan` charges it.
    assumed_hfu = DEFAULT_HFU
    # pretrain's "selective" recomputes only elementwise ops: no matmul FLOPs to charge.
    recompute = "full" if ds.activation_checkpointing is True else "none"
    tokens_per_step = prepared.tokens_per_step.value
    per_token = hardware_flops_per_token(
        shape.matmul_params, shape.num_layers, shape.hidden_size, seq_len, recompute
    )
    step_s = training_seconds(
        per_token * tokens_per_step, gpus, gpu.peak(recipe.train.precision), assumed_hfu
    )
    return {
        "gpu": gpu.name,
        "num_gpus": gpus,
        "num_params": shape.num_params,
        "memory_per_gpu_gib": round(memory.total / 2**30, 2),
        "gpu_memory_gib": round(gpu.memory_gib, 1),
        "fits": memory.fits,
        **memory_phases(recipe, shape, memory, gpu.memory_bytes, prepared.spec.num_gpus),
        "assumed_hfu": assumed_hfu,
        "recompute": recompute,
        "step_seconds": round(step_s, 3),
        "total_hours": round(step_s * prepared.max_steps / 3600, 2),
        "tokens_per_step": tokens_per_step,
    }


def memory_phases(
    recipe: Any, shape: Any, memory: Any, gpu_bytes: float, gpus_per_node: int
) -> dict[str, Any]:
    """Device and host memory at start (construction) and in steady state (training), from the planner.

    At start, built whole, every rank builds the fp32 model on the host (plan.host's load) and DeepSpeed
    moves the whole 16-bit model to each GPU before ZeRO partitions it; built sharded (ZeRO-3
    zero.Init, domainlm.pretrain.construct) a rank holds its partition plus the one module being built.
    Steady state is the planner's per-GPU total and the host's offloaded states (x1.5 buffers).
    """
    from domainlm.plan.host import HOST_BUFFER_FACTOR
    from domainlm.plan.memory import USABLE_FRACTION

    sharded = construct.applies(recipe)
    n, largest = float(shape.num_params), float(shape.largest_module_params())
    weight_bytes = 4 if recipe.train.precision == "fp32" else 2
    start_device = weight_bytes * (n / memory.shard_group_size + largest if sharded else n)
    load = memory.host_load_sharded_per_node if sharded else memory.host_load_per_node
    gib = 2**30
    return {
        "sharded_construction": sharded,
        "device_start_gib": round(start_device / gib, 2),
        "device_steady_gib": round(memory.total / gib, 2),
        "device_start_fits": start_device <= gpu_bytes * USABLE_FRACTION,
        "host_start_per_node_gib": round(HOST_BUFFER_FACTOR * load / gib, 1),
        "host_steady_per_node_gib": round(HOST_BUFFER_FACTOR * memory.cpu_per_gpu * gpus_per_node / gib, 1),
    }


def _mix_report(prepared: PreparedRun) -> dict[str, Any]:
    inputs = prepared.inputs
    manifest = inputs.manifest
    return {
        "dir": str(inputs.mix_dir),
        "built": manifest is not None,
        "build_from": str(inputs.mix_yaml) if manifest is None else None,
        "fingerprint": manifest.fingerprint if manifest is not None else None,
    }


def dry_run_report(prepared: PreparedRun) -> dict[str, Any]:
    """What --dry-run prints (and --json holds): every value resolved once, with its origin."""
    tokenizer = prepared.inputs.tokenizer
    seq_len, tokens = prepared.seq_len, prepared.tokens_per_step
    return {
        "recipe": prepared.recipe.model_dump(mode="json"),
        "run_dir": str(prepared.run_dir),
        "mix_dir": str(prepared.mix_dir),
        "mix": _mix_report(prepared),
        "seq_len": {"value": seq_len.value, "source": seq_len.source},
        "tokens_per_step": {"value": tokens.value, "source": tokens.source},
        "tokenizer": {
            "dir": str(tokenizer.path),
            "source": prepared.inputs.tokenizer_source,
            "fingerprint": tokenizer.fingerprint,
            "vocab_size": tokenizer.vocab_size,
            "eos_token_id": tokenizer.eos_token_id,
        },
        "world_size": prepared.spec.world_size,
        "gradient_accumulation_steps": prepared.ds_config["gradient_accumulation_steps"],
        "max_steps": prepared.max_steps,
        "deepspeed_config": prepared.ds_config,
        "command": format_command(prepared.command, prepared.spec),
        "resume_from": str(prepared.resume_from) if prepared.resume_from else None,
        "estimate": planner_estimate(prepared),
    }
