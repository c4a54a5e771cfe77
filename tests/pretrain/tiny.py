"""Tiny tokenizer and tiny mix directory (contract A) for the pretraining tests, built in seconds."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import numpy as np

from domainlm.assets import sample_corpus
from domainlm.tokenizer.load import load_tokenizer

SPECIALS = ["<pad>", "<unk>", "<s>", "</s>", "[CLS]", "[SEP]", "[MASK]"] + [
    f"<extra_id_{i}>" for i in range(8)
]


def read_docs(domain: str, num_docs: int, max_chars: int) -> list[str]:
    docs = []
    with gzip.open(sample_corpus(domain), "rt", encoding="utf-8") as handle:
        for line in handle:
            docs.append(json.loads(line)["text"][:max_chars])
            if len(docs) == num_docs:
                break
    return docs


def build_tokenizer(out: Path, texts: list[str], vocab_size: int = 384) -> Path:
    """A byte-level BPE with pad/eos/bos/unk, BERT specials and 8 T5 sentinels (fits every objective)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    fast.save_pretrained(out)
    return out


def _pack(ids: list[int], seq_len: int) -> np.ndarray:
    usable = len(ids) - len(ids) % seq_len
    return np.asarray(ids[:usable], dtype=np.uint16).reshape(-1, seq_len)


def _write(path: Path, array: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    array.tofile(path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_mix(
    out: Path, tokenizer_dir: Path, docs: dict[str, list[str]], seq_len: int, seed: int = 0
) -> Path:
    """A `domainlm.mix/v1` directory: shuffled train shards with their source ids, val/<source>.bin +
    .jsonl.gz, manifest."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    eos = tok.eos_token_id
    train_rows, row_sources, sources = [], [], []
    for index, (name, texts) in enumerate(docs.items()):
        val_texts, train_texts = texts[:3], texts[3:]
        train_ids = [i for t in train_texts for i in tok(t)["input_ids"] + [eos]]
        val_ids = [i for t in val_texts for i in tok(t)["input_ids"] + [eos]]
        rows = _pack(train_ids, seq_len)
        train_rows.append(rows)
        row_sources.append(np.full(len(rows), index, dtype=np.uint8))
        val = _pack(val_ids, seq_len)
        _write(out / "val" / f"{name}.bin", val)
        with gzip.open(out / "val" / f"{name}.jsonl.gz", "wt", encoding="utf-8") as handle:
            for k, text in enumerate(val_texts):
                handle.write(json.dumps({"text": text, "source": name, "id": f"{name}-{k}"}) + "\n")
        sources.append(
            {
                "name": name,
                "paths": [str(sample_corpus(name))],
                "fingerprint": hashlib.sha256(name.encode()).hexdigest(),
                "documents": len(train_texts),
                "available_tokens": len(train_ids),
                "target_ratio": 0.5,
                "tokens_taken": rows.size,
                "repeats": 1.0,
                "realized_ratio": 0.5,
                "val": {
                    "documents": len(val_texts),
                    "tokens": len(val_ids),
                    "bytes": sum(len(t.encode("utf-8")) for t in val_texts),
                    "sequences": len(val),
                    "path": f"val/{name}.bin",
                    "text_path": f"val/{name}.jsonl.gz",
                },
            }
        )
    rows = np.concatenate(train_rows)
    order = np.random.default_rng(seed).permutation(len(rows))
    rows, row_source = rows[order], np.concatenate(row_sources)[order]
    half = len(rows) // 2
    shards = []
    for k, part in enumerate([slice(0, half), slice(half, len(rows))]):
        digest = _write(out / "train" / f"shard_{k:05d}.bin", rows[part])
        ids_digest = _write(out / "train" / f"shard_{k:05d}.source_ids", row_source[part])
        shards.append(
            {
                "path": f"train/shard_{k:05d}.bin",
                "num_sequences": len(rows[part]),
                "sha256": digest,
                "source_ids_path": f"train/shard_{k:05d}.source_ids",
                "source_ids_sha256": ids_digest,
            }
        )
    loaded = load_tokenizer(tokenizer_dir)  # the one loader: its vocab size, EOS and fingerprint
    assert loaded.eos_token_id == eos
    manifest = {
        "format": "domainlm.mix/v1",
        "seq_len": seq_len,
        "dtype": "uint16",
        "vocab_size": loaded.vocab_size,
        "eos_token_id": eos,
        "seed": seed,
        "tokenizer": {
            "path": str(tokenizer_dir),
            "fingerprint": loaded.fingerprint,
            "eos_token": loaded.eos_token,
        },
        "config": {"seq_len": seq_len},
        "sources": sources,
        "train": {"num_sequences": len(rows), "num_tokens": rows.size, "shards": shards},
    }
    manifest["fingerprint"] = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return out
