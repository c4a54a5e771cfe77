"""A tokenizer directory -> a loaded fast tokenizer plus what the coverage report needs to know.

Any local Hugging Face tokenizer directory works (trained, extended, shipped GPT-2 / BERT); the
report and `extend` use the Rust `tokenizers.Tokenizer` underneath for speed and offsets.
"""

from __future__ import annotations

import codecs
import json
import logging
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from domainlm.errors import DataError
from domainlm.outputs import MARKER_NAME, fingerprint_files

log = logging.getLogger(__name__)


def _hex_bytes(error: UnicodeDecodeError) -> tuple[str, int]:
    return "".join(f"<0x{b:02X}>" for b in error.object[error.start : error.end]), error.end


codecs.register_error("domainlm_hex", _hex_bytes)  # partial characters shown as <0xE6>

_BYTE_FALLBACK = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")  # SentencePiece / Llama byte-fallback pieces


@cache
def byte_decoder() -> dict[str, int]:
    """GPT-2's printable character -> byte map (the inverse of `bytes_to_unicode`)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    codes, extra = printable[:], 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return {chr(code): byte for byte, code in zip(printable, codes, strict=True)}


def _mentions_byte_level(section: object) -> bool:
    return '"ByteLevel"' in json.dumps(section)


@dataclass
class LoadedTokenizer:
    """A tokenizer under a report name, with per-id flags precomputed for vectorized counting."""

    name: str
    path: Path
    backend: Tokenizer
    model_type: str
    byte_level: bool
    metaspace: bool  # SentencePiece-style: "▁" stands for a space
    vocab_size: int
    unk_id: int | None
    fingerprint: str
    fallback: np.ndarray  # bool per id: a byte piece, not a whole character (byte fallback)
    special_ids: frozenset[int]

    def piece(self, token_id: int) -> str:
        """A readable form of one token: the text it stands for; partial characters as <0xNN>."""
        token = self.backend.id_to_token(token_id)
        if token is None:
            return f"<id {token_id}>"
        if token_id in self.special_ids:
            return token
        if not self.byte_level:
            return token.replace("▁", " ") if self.metaspace else token
        table = byte_decoder()
        return bytes(table[ch] for ch in token if ch in table).decode("utf-8", errors="domainlm_hex")

    def describe(self) -> dict:
        return {
            "name": self.name,
            "path": str(self.path),
            "model_type": self.model_type,
            "byte_level": self.byte_level,
            "vocab_size": self.vocab_size,
            "fingerprint": self.fingerprint,
        }


def _fallback_flags(backend: Tokenizer, byte_level: bool, size: int) -> np.ndarray:
    flags = np.zeros(size, dtype=bool)
    table = byte_decoder()
    for token, index in backend.get_vocab(with_added_tokens=True).items():
        if _BYTE_FALLBACK.match(token):
            flags[index] = True
        elif byte_level and token and all(ch in table for ch in token):
            try:
                bytes(table[ch] for ch in token).decode("utf-8")
            except UnicodeDecodeError:
                flags[index] = True
    return flags


def _read_backend(name: str, path: Path) -> Tokenizer:
    """tokenizer.json directly; other HF folders (vocab.json + merges.txt, .model) via AutoTokenizer."""
    if not path.is_dir():
        what = "a file, not a tokenizer directory" if path.exists() else "no such directory"
        raise DataError(
            f"--tokenizer {name}={path}: {what}; pass a folder written by "
            "`domainlm tokenizer train`, a local Hugging Face tokenizer, or gpt2 / bert-base-uncased"
        )
    try:
        if (path / "tokenizer.json").is_file():
            return Tokenizer.from_file(str(path / "tokenizer.json"))
        from transformers import AutoTokenizer

        fast = AutoTokenizer.from_pretrained(str(path), use_fast=True)
        return fast.backend_tokenizer
    except Exception as exc:  # loaders raise many types with long messages; keep the first line
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise DataError(
            f"--tokenizer {name}={path}: cannot be loaded as a fast tokenizer ({reason})"
        ) from None


def load_tokenizer(name: str, path: Path) -> LoadedTokenizer:
    """Load `path` as a fast tokenizer; anything unreadable is a one-line DataError naming it."""
    path = Path(path)
    backend = _read_backend(name, path)
    # Whole documents are measured: a tokenizer.json that truncates at 512 tokens would undercount.
    backend.no_truncation()
    backend.no_padding()
    spec = json.loads(backend.to_str())
    model = spec.get("model") or {}
    byte_level = _mentions_byte_level(spec.get("pre_tokenizer")) or _mentions_byte_level(spec.get("decoder"))
    size = max(backend.get_vocab(with_added_tokens=True).values()) + 1
    unk_token = model.get("unk_token")
    unk_id = model.get("unk_id") if model.get("type") == "Unigram" else None
    if unk_token is not None:
        unk_id = backend.token_to_id(unk_token)
    # Fingerprint what defines the tokenizer; manifest.json / run.json / the output marker carry
    # timings and paths.
    skip = ("manifest.json", "run.json", MARKER_NAME)
    files = [p for p in path.iterdir() if p.is_file() and p.name not in skip]
    return LoadedTokenizer(
        name=name,
        path=path,
        backend=backend,
        model_type=str(model.get("type", "unknown")),
        byte_level=byte_level,
        metaspace="▁" in json.dumps(spec.get("decoder"), ensure_ascii=False),
        vocab_size=size,
        unk_id=unk_id,
        fingerprint=fingerprint_files(files),
        fallback=_fallback_flags(backend, byte_level, size),
        special_ids=frozenset(t["id"] for t in spec.get("added_tokens", []) if t.get("special")),
    )
