"""Numerics of the DeepSpeed setup: fp32 gradient accumulation under bf16, weight-decay groups, skipped
steps, and the epochs warning. One real single-rank DeepSpeed engine per ZeRO stage, in one subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from domainlm.errors import ConfigError
from domainlm.mix.manifest import open_mix
from domainlm.pretrain.config import ModelConfig, load_recipe
from domainlm.pretrain.data import epochs_warning
from domainlm.pretrain.engine import build_deepspeed_config, optimizer_groups
from domainlm.pretrain.launch import default_port
from domainlm.pretrain.model import TokenIds, build_model


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_bf16_accumulates_and_reduces_gradients_in_fp32(stage):
    recipe = load_recipe("legal", [f"deepspeed.zero_stage={stage}"])
    ds = build_deepspeed_config(recipe, seq_len=2048, world_size=8)
    assert ds["bf16"]["enabled"] and ds["data_types"] == {"grad_accum_dtype": "fp32"}
    assert ds["communication_data_type"] == "fp32"


def test_fp32_runs_need_no_accumulation_dtype_and_bf16_ddp_is_refused():
    fp32 = build_deepspeed_config(load_recipe("legal", ["train.precision=fp32"]), 2048, 8)
    assert "data_types" not in fp32 and "communication_data_type" not in fp32
    with pytest.raises(
        ConfigError, match=r"deepspeed.zero_stage 0 with train.precision bf16: .*zero_stage 1"
    ):
        build_deepspeed_config(load_recipe("legal", ["deepspeed.zero_stage=0"]), 2048, 8)


def test_weight_decay_skips_norms_and_biases():
    ids = TokenIds(vocab_size=64, eos_token_id=3, pad_token_id=0)
    bert = build_model(ModelConfig(arch="bert", hidden_size=16, num_layers=1, num_heads=2), ids, 16, seed=0)
    names = {id(p): n for n, p in bert.named_parameters()}
    decay, no_decay = optimizer_groups(bert, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    decayed = {names[id(p)] for p in decay["params"]}
    undecayed = {names[id(p)] for p in no_decay["params"]}
    assert "bert.encoder.layer.0.attention.self.query.weight" in decayed
    assert "bert.embeddings.word_embeddings.weight" in decayed
    assert "bert.encoder.layer.0.attention.self.query.bias" in undecayed
    assert "bert.embeddings.LayerNorm.weight" in undecayed and "bert.embeddings.LayerNorm.bias" in undecayed
    assert all(n.endswith(("bias", "weight")) for n in undecayed)
    assert all("LayerNorm" in n or n.endswith("bias") for n in undecayed)
    assert len(decayed) + len(undecayed) == len(names)


# One rank, gloo, the CPU accelerator: each stage's bf16 engine is built from our DeepSpeed JSON; a step
# with a finite loss is applied, one with an infinite loss is skipped and counted.
ENGINE_SCRIPT = r"""
import json, os, sys
import torch
from domainlm.pretrain import engine as ds
from domainlm.pretrain.config import load_recipe
from domainlm.pretrain.model import TokenIds, build_model

ds.init_distributed("cpu")
results = {}
for stage in (1, 2, 3):
    recipe = load_recipe("tiny_cpu", [f"deepspeed.zero_stage={stage}", "train.precision=bf16",
        "train.global_batch_sequences=1", "train.micro_batch_size=1", "launch.device=cpu",
        "deepspeed.reduce_bucket_size=100K", "deepspeed.stage3_prefetch_bucket_size=100K",
        "model.hidden_size=32", "model.num_layers=1", "model.num_heads=2", "model.intermediate_size=64"])
    config = ds.build_deepspeed_config(recipe, seq_len=16, world_size=1)
    model = build_model(recipe.model, TokenIds(64, 3, 0), 16, seed=0)
    engine = ds.initialize(model, config, ds.build_scheduler_fn(recipe, 10))
    batch = torch.randint(4, 64, (1, 16))
    losses = []
    for scale in (1.0, float("inf"), 1.0):
        loss = engine(input_ids=batch, labels=batch).loss * scale
        engine.backward(loss)
        engine.step()
        losses.append(ds.skipped_steps(engine))
    results[stage] = {
        "dtypes": [str(t) for t in engine.get_data_types()],
        "decay": sorted(g["weight_decay"] for g in engine.optimizer.param_groups),
        "skipped_after_each_step": losses,
    }
print("RESULT " + json.dumps(results), flush=True)
ds.shutdown()
"""


@pytest.mark.slow  # ~30 s; the first DeepSpeed start of a test session also JIT-builds its CPU comm op
def test_bf16_engines_build_and_count_skipped_steps():
    env = {
        **os.environ,
        "DS_ACCELERATOR": "cpu",
        "RANK": "0",
        "LOCAL_RANK": "0",
        "WORLD_SIZE": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(default_port(1)),
    }
    done = subprocess.run(
        [sys.executable, "-c", ENGINE_SCRIPT], env=env, capture_output=True, text=True, timeout=600
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    results = json.loads(lines[0].removeprefix("RESULT "))
    for stage in ("1", "2", "3"):
        assert results[stage]["dtypes"] == ["torch.bfloat16", "torch.float32"], stage
        assert results[stage]["decay"] == [0.0, 0.1], stage
        # DeepSpeed checks bf16 gradients for inf/NaN and skips that step; our counter sees it.
        assert results[stage]["skipped_after_each_step"] == [0, 1, 1], stage


def test_total_tokens_beyond_the_mix_warns_with_epochs(tiny_data):
    manifest = open_mix(tiny_data[1])
    available = manifest.train.num_sequences
    assert epochs_warning(available, manifest, "train.total_tokens") is None
    message = epochs_warning(3 * available + available // 2, manifest, "train.total_tokens")
    assert message.startswith(
        f"train.total_tokens trains {3 * available + available // 2:,} sequences, 3.50 epochs"
    )
    assert "build a larger mix" in message
