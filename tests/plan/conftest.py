import json

import pytest


def _val(name: str) -> dict:
    return {"documents": 1, "tokens": 10, "bytes": 40, "sequences": 0, "path": f"val/{name}.bin",
            "text_path": f"val/{name}.jsonl.gz"}  # fmt: skip


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
             "repeats": 0.0, "realized_ratio": 0.51, "val": _val("finance")},
            {"name": "general", "paths": ["g.jsonl"], "fingerprint": "b", "documents": 10,
             "available_tokens": 345_000_000_000, "target_ratio": 0.49, "tokens_taken": 0,
             "repeats": 0.0, "realized_ratio": 0.49, "val": _val("general")},
        ],
        "train": {"num_sequences": 0, "num_tokens": 0, "shards": []},
        "fingerprint": "f" * 64,
    }  # fmt: skip
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out
