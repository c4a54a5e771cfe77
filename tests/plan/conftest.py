import json

import pytest


@pytest.fixture
def mix_dir(tmp_path):
    """A `domainlm mix` manifest (contract A) with a 51/49 finance/general mix; no shards needed."""
    out = tmp_path / "mix"
    out.mkdir()
    manifest = {
        "format": "domainlm.mix/v1",
        "seq_len": 2048,
        "dtype": "uint32",
        "vocab_size": 131072,
        "eos_token_id": 0,
        "seed": 1234,
        "tokenizer": {"path": "tok", "fingerprint": "0" * 64},
        "config": {},
        "sources": [
            {"name": "finance", "paths": ["f.jsonl"], "fingerprint": "a", "documents": 10,
             "available_tokens": 363_000_000_000, "target_ratio": 0.51, "tokens_taken": 0,
             "repeats": 0.0, "realized_ratio": 0.51, "val": {}},
            {"name": "general", "paths": ["g.jsonl"], "fingerprint": "b", "documents": 10,
             "available_tokens": 345_000_000_000, "target_ratio": 0.49, "tokens_taken": 0,
             "repeats": 0.0, "realized_ratio": 0.49, "val": {}},
        ],
        "train": {"num_sequences": 0, "num_tokens": 0, "shards": []},
        "fingerprint": "f" * 64,
    }  # fmt: skip
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out
