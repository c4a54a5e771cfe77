"""The DeepSpeed JSON from a recipe, and the lr schedule."""

from __future__ import annotations

import pytest

from domainlm.pretrain.config import load_recipe
from domainlm.pretrain.engine import build_deepspeed_config, lr_multiplier


def test_legal_recipe_deepspeed_json():
    ds = build_deepspeed_config(load_recipe("legal"), seq_len=2048, world_size=8)
    assert ds["train_batch_size"] == 512
    assert ds["train_micro_batch_size_per_gpu"] == 8
    assert ds["gradient_accumulation_steps"] == 8  # 512 / (8 x 8)
    assert ds["gradient_clipping"] == 0.3
    assert ds["bf16"] == {"enabled": True} and ds["fp16"]["enabled"] is False
    assert ds["zero_optimization"]["stage"] == 3
    assert ds["zero_optimization"]["reduce_bucket_size"] == 50_000_000
    params = ds["optimizer"]["params"]
    assert ds["optimizer"]["type"] == "AdamW" and params["lr"] == 3e-4 and params["betas"] == [0.9, 0.95]
    assert params["torch_adam"] is True


def test_offload_and_stage0():
    recipe = load_recipe(
        "legal", ["deepspeed.offload_optimizer=true", "deepspeed.offload_params=true", "train.precision=fp16"]
    )
    ds = build_deepspeed_config(recipe, seq_len=2048, world_size=16)
    assert ds["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert ds["zero_optimization"]["offload_param"]["device"] == "cpu"
    assert ds["optimizer"]["params"]["torch_adam"] is False  # offload needs DeepSpeedCPUAdam
    assert ds["fp16"]["enabled"] and not ds["bf16"]["enabled"]
    assert ds["gradient_accumulation_steps"] == 4
    stage0 = build_deepspeed_config(
        load_recipe("legal", ["deepspeed.zero_stage=0", "train.precision=fp32"]), 2048, 8
    )
    assert stage0["zero_optimization"] == {"stage": 0}


@pytest.mark.parametrize(
    ("step", "decay", "expected"),
    [
        (0, "cosine", 0.1),  # (0 + 1) / 10
        (9, "cosine", 1.0),
        (10, "cosine", 1.0),  # decay starts at progress 0
        (60, "cosine", 0.55),  # halfway: 0.1 + 0.9 x 0.5
        (110, "cosine", 0.1),
        (500, "cosine", 0.1),  # held at the floor after the end
        (35, "linear", 0.1 + 0.9 * 0.75),
        (60, "constant", 1.0),
    ],
)
def test_lr_multiplier(step, decay, expected):
    assert lr_multiplier(step, warmup_steps=10, total_steps=110, min_ratio=0.1, decay=decay) == pytest.approx(
        expected
    )
