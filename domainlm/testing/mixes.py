"""A hand-written mix manifest (format domainlm.mix/v1) for tests that read a mix but need no shards.

Tests of plan, eval and the tokenizer checks build one with the fields they care about; `open_mix`
reads it like a real `domainlm mix` output.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from domainlm.mix.layout import FORMAT, MANIFEST_NAME, val_text_path, val_token_path


def source_entry(
    name: str, available_tokens: int = 1000, target_ratio: float = 1.0, documents: int = 1
) -> dict:
    """One source of a manifest; its held-out files sit at the layout's paths (written or not)."""
    val = {"documents": documents, "tokens": 0, "bytes": 0, "sequences": 0,
           "path": val_token_path(name), "text_path": val_text_path(name)}  # fmt: skip
    return {"name": name, "paths": [f"{name}.jsonl"], "fingerprint": "0" * 64, "documents": documents,
            "available_tokens": available_tokens, "target_ratio": target_ratio, "tokens_taken": 0,
            "repeats": 0.0, "realized_ratio": target_ratio, "val": val}  # fmt: skip


def write_manifest(root: Path, sources: list[dict], **fields: Any) -> Path:
    """root/manifest.json with `sources` (see source_entry); `fields` override the top-level keys."""
    manifest = {
        "format": FORMAT,
        "seq_len": 2048,
        "dtype": "uint16",
        "vocab_size": 50257,
        "eos_token_id": 50256,
        "seed": 1234,
        "tokenizer": {"path": "tok", "fingerprint": "0" * 64},
        "config": {},
        "sources": sources,
        "train": {"num_sequences": 0, "num_tokens": 0, "shards": []},
        "fingerprint": "f" * 64,
        **fields,
    }
    root.mkdir(parents=True, exist_ok=True)
    (root / MANIFEST_NAME).write_text(json.dumps(manifest), encoding="utf-8")
    return root
