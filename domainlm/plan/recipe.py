"""A `Plan` + mix directory -> a `domainlm pretrain` recipe YAML (contract D: domainlm/pretrain/config.py).

The recipe carries the seq_len the plan was made with (`data.seq_len`), so pretrain checks it against
the mix. Plan comes before pretrain in the pipeline and does not import it: the caller (the CLI)
passes the schema's validator, and `write_recipe` runs it before writing, so a plan never produces a
recipe `domainlm pretrain` would reject.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from domainlm.config import dump_yaml
from domainlm.errors import ConfigError
from domainlm.outputs import atomic_write_text
from domainlm.plan.planner import Plan


def recipe_dict(plan: Plan, mix_dir: str | Path, recipe_path: Path, name: str, nodes: int) -> dict[str, Any]:
    """The recipe mapping for `plan`: shape, batch schedule, precision, ZeRO stage, offload, launch."""
    rec, shape = plan.recommendation, plan.shape
    if rec is None:
        raise ConfigError("--write-recipe: the plan has no recommended strategy (give --gpu-type and --gpus)")
    if shape.arch != "llama":
        raise ConfigError(f"--write-recipe: domainlm pretrain trains --arch llama, not {shape.arch}")
    if rec.recompute == "selective":  # Korthikanti's attention-core recompute, which pretrain lacks
        raise ConfigError(
            "--write-recipe: the planner's selective recompute (attention scores only, Korthikanti et al.) "
            "is not what pretrain's 'selective' checkpointing does (it keeps matmul outputs); "
            "plan with --recompute full or none"
        )
    num_gpus = plan.compute.num_gpus or 1
    mix = os.path.relpath(Path(mix_dir).resolve(), recipe_path.resolve().parent)
    return {
        "name": name,
        "model": {
            "arch": "llama",
            "hidden_size": shape.hidden_size,
            "num_layers": shape.num_layers,
            "num_heads": shape.num_heads,
            "num_kv_heads": shape.num_kv_heads,
            "intermediate_size": shape.ffn_size,
            "tie_embeddings": shape.tie_embeddings,
        },
        "data": {"mix": mix, "seq_len": plan.seq_len},
        "train": {
            "global_batch_sequences": rec.global_batch_sequences,
            "micro_batch_size": rec.micro_batch,
            "total_tokens": int(plan.sizing.tokens),
            "precision": plan.precision,
        },
        "deepspeed": {
            "zero_stage": _zero_stage(rec.zero_stage, plan.precision),
            "offload_optimizer": rec.offload in ("optimizer", "params"),
            "offload_params": rec.offload == "params",
            "activation_checkpointing": rec.activation_checkpointing,
        },
        "launch": {
            "num_gpus": num_gpus // nodes,
            "num_nodes": nodes,
            "gpu_type": plan.compute.gpu_type,
        },
    }


def _zero_stage(stage: int, precision: str) -> int:
    """The ZeRO stage to write: a bf16 "DDP" plan is written as ZeRO-1.

    pretrain accumulates bf16 gradients in fp32, which DeepSpeed only supports under ZeRO; ZeRO-1 holds
    less per GPU than DDP (optimizer states sharded), so whatever fit as DDP fits as ZeRO-1, for the
    cost of one all-gather of the bf16 weights per step."""
    return 1 if stage == 0 and precision == "bf16" else stage


def write_recipe(
    plan: Plan,
    mix_dir: str | Path | None,
    path: str | Path,
    nodes: int,
    overwrite: bool,
    validate: Callable[[dict[str, Any], str], object],
) -> Path:
    """Validate the recipe with `validate(data, source)` (the pretrain schema), then write it atomically."""
    path = Path(path)
    if mix_dir is None:
        raise ConfigError("--write-recipe needs --mix MIX_DIR: the recipe names the data it trains on")
    if path.exists() and not overwrite:
        raise ConfigError(f"--write-recipe {path}: file exists; choose another path or pass --overwrite")
    data = recipe_dict(plan, mix_dir, path, path.stem, nodes)
    validate(data, f"--write-recipe {path}")
    atomic_write_text(path, "# written by `domainlm plan`; edit freely\n" + dump_yaml(data))
    return path
