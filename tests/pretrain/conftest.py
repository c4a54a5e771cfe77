"""Tiny tokenizer, tiny mix and tiny recipes shared by the pretraining tests (built once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.pretrain.tiny import build_mix, build_tokenizer, read_docs

SEQ_LEN = 64

# A 2-layer, 64-wide Llama on 2 CPU ranks: 8 sequences per step = micro 2 x 2 ranks x 2 accumulation.
TINY_RECIPE = {
    "name": "tiny",
    "model": {"arch": "llama", "hidden_size": 64, "num_layers": 2, "num_heads": 4, "intermediate_size": 128},
    "optimizer": {"lr": 3e-3, "warmup_steps": 5, "grad_clip": 1.0},
    "train": {
        "global_batch_sequences": 8,
        "micro_batch_size": 2,
        "max_steps": 30,
        "precision": "fp32",
        "deterministic": True,
        "seed": 1,
    },
    # Small buckets: ZeRO-1/2 zero a reduce bucket every micro-step, and 50M elements cost seconds on CPU.
    "deepspeed": {"zero_stage": 3, "reduce_bucket_size": "500K", "stage3_prefetch_bucket_size": "500K"},
    "checkpoint": {"every_steps": 10, "keep_last": 2},
    "eval": {"every_steps": 30, "max_sequences": 8},
    "logging": {"every_steps": 1},
    "launch": {"device": "cpu", "num_gpus": 2},
}


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> tuple[Path, Path]:
    """(tokenizer dir, mix dir): 384-token BPE with BERT/T5 specials; legal + general, seq_len 64."""
    root = tmp_path_factory.mktemp("tiny_data")
    docs = {"legal": read_docs("legal", 24, 4000), "general": read_docs("general", 24, 4000)}
    tokenizer = build_tokenizer(root / "tokenizer", [t for texts in docs.values() for t in texts])
    return tokenizer, build_mix(root / "mix", tokenizer, docs, SEQ_LEN)


@pytest.fixture(scope="session")
def tiny_recipe(tmp_path_factory, tiny_data) -> Path:
    path = tmp_path_factory.mktemp("recipes") / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY_RECIPE, "data": {"mix": str(tiny_data[1])}}))
    return path


@pytest.fixture
def mix_yaml(tmp_path, tiny_data) -> Path:
    """A mix YAML (seq_len 64, the tiny tokenizer) over two 12-document corpora: built in about a second."""
    import json

    folder = tmp_path / "mix_yaml"
    folder.mkdir()
    sources = {}
    for domain in ("legal", "general"):
        lines = [json.dumps({"text": text}) for text in read_docs(domain, 12, 2000)]
        (folder / f"{domain}.jsonl").write_text("\n".join(lines) + "\n")
        sources[domain] = {"paths": [f"{domain}.jsonl"], "ratio": 0.5}
    config = {"sources": sources, "seq_len": SEQ_LEN, "val_fraction": 0.2, "tokenizer": str(tiny_data[0])}
    path = folder / "mix.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
