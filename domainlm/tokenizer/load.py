"""A tokenizer folder or tokenizer.json -> `LoadedTokenizer`: the ONE loader, and its identity.

Every stage loads tokenizers here: the coverage report, `tokenizer extend`, the mix (which writes the
ids) and pretrain (which must train on ids of that same tokenizer). Any local Hugging Face tokenizer
works (trained, extended, shipped `gpt2` / `bert-base-uncased`); it is used as the Rust
`tokenizers.Tokenizer`, with truncation and padding off (a saved truncation would cut documents).

Identity, defined once here:
- `vocab_size` = largest id + 1 over the vocabulary and added tokens: every id is < vocab_size,
  so it is the embedding rows a model needs and decides the shard dtype.
- `fingerprint` = sha256 of the serialized tokenizer (truncation and padding off) + the EOS id.
  Paths, file names and timestamps do not count, so a copied tokenizer keeps it; a different
  vocabulary, merge list, normalizer, added token or EOS changes it.
`check_matches_mix` compares both and the EOS id with what a mix manifest recorded.

Loading is on every mix's path, cached or not (a warm re-mix spends most of its CPU here): the file
is parsed once (by `tokenizers`; Python parses it again only to word an error) and serialized once
(the fingerprint and the reports' spec share `serialized`).
"""

from __future__ import annotations

import codecs
import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tokenizers import Tokenizer

from domainlm.errors import ConfigError, DataError
from domainlm.tokenizer.resolve import shipped_tokenizer_dir

_CONFIG_FILES = ("tokenizer_config.json", "special_tokens_map.json")  # where HF folders name eos_token
_BYTE_FALLBACK = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")  # SentencePiece / Llama byte-fallback pieces


def _hex_bytes(error: UnicodeDecodeError) -> tuple[str, int]:
    return "".join(f"<0x{b:02X}>" for b in error.object[error.start : error.end]), error.end


codecs.register_error("domainlm_hex", _hex_bytes)  # partial characters shown as <0xE6>


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


def vocab_size_of(tokenizer: Tokenizer) -> int:
    """Largest id + 1 (vocabulary and added tokens): the one vocabulary size, see the module docstring."""
    return max(tokenizer.get_vocab(with_added_tokens=True).values()) + 1


def fingerprint_of(tokenizer: Tokenizer, eos_token_id: int | None, serialized: str | None = None) -> str:
    """sha256 of the serialized tokenizer (truncation and padding must be off) and the EOS id;
    `serialized`: `tokenizer.to_str()` when the caller already has it."""
    digest = hashlib.sha256((serialized or tokenizer.to_str()).encode("utf-8"))
    digest.update(f"\neos={eos_token_id}".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class LoadedTokenizer:
    """A fast tokenizer with its identity (vocab size, EOS, fingerprint) and what reports need."""

    tokenizer: Tokenizer  # truncation and padding off
    path: Path
    name: str  # a report's label (NAME=PATH), else the folder name
    eos_token: str | None  # the document separator; None when the tokenizer names none
    eos_token_id: int | None
    vocab_size: int  # every id is < vocab_size (see module docstring)
    fingerprint: str  # see module docstring
    serialized: str = field(default="", repr=False, compare=False)  # tokenizer.to_str(), made once

    @property
    def dtype(self) -> np.dtype:
        """uint16 when every id fits (vocab <= 65,536), else uint32: half the disk for most vocabs."""
        return np.dtype(np.uint16) if self.vocab_size <= 1 << 16 else np.dtype(np.uint32)

    @cached_property
    def _spec(self) -> dict[str, Any]:
        return json.loads(self.serialized or self.tokenizer.to_str())

    @cached_property
    def model_type(self) -> str:
        return str((self._spec.get("model") or {}).get("type", "unknown"))

    @cached_property
    def byte_level(self) -> bool:
        """GPT-2 style: tokens are bytes written as printable characters."""
        return any('"ByteLevel"' in json.dumps(self._spec.get(k)) for k in ("pre_tokenizer", "decoder"))

    @cached_property
    def metaspace(self) -> bool:
        """SentencePiece style: "▁" stands for a space."""
        return "▁" in json.dumps(self._spec.get("decoder"), ensure_ascii=False)

    @cached_property
    def unk_id(self) -> int | None:
        model = self._spec.get("model") or {}
        if model.get("unk_token") is not None:
            return self.tokenizer.token_to_id(model["unk_token"])
        return model.get("unk_id") if model.get("type") == "Unigram" else None

    @cached_property
    def special_ids(self) -> frozenset[int]:
        return frozenset(t["id"] for t in self._spec.get("added_tokens", []) if t.get("special"))

    @cached_property
    def fallback(self) -> np.ndarray:
        """bool per id: a byte piece, not a whole character (byte fallback, or a partial UTF-8 byte run)."""
        flags = np.zeros(self.vocab_size, dtype=bool)
        table = byte_decoder()
        for token, index in self.tokenizer.get_vocab(with_added_tokens=True).items():
            if _BYTE_FALLBACK.match(token):
                flags[index] = True
            elif self.byte_level and token and all(ch in table for ch in token):
                try:
                    bytes(table[ch] for ch in token).decode("utf-8")
                except UnicodeDecodeError:
                    flags[index] = True
        return flags

    def piece(self, token_id: int) -> str:
        """A readable form of one token: the text it stands for; partial characters as <0xNN>."""
        token = self.tokenizer.id_to_token(token_id)
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
            "eos_token": self.eos_token,
            "eos_token_id": self.eos_token_id,
            "fingerprint": self.fingerprint,
        }


def _token_text(value: object) -> str | None:
    if isinstance(value, dict):  # {"content": "</s>", "lstrip": false, ...}
        value = value.get("content")
    return value if isinstance(value, str) else None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"tokenizer {path}: not valid JSON ({exc}); fix or replace the file") from None


def _configured_eos(folder: Path) -> str | None:
    for name in _CONFIG_FILES:
        if (folder / name).is_file():
            data = _read_json(folder / name)
            eos = _token_text(data.get("eos_token")) if isinstance(data, dict) else None
            if eos:
                return eos
    return None


def _from_json_file(path: Path) -> Tokenizer:
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # the Rust side raises a bare Exception for what it cannot parse
        _read_json(path)  # a JSON syntax error gets a one-line message naming the file, not a Rust panic
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise DataError(f"tokenizer {path}: not a tokenizers JSON file ({reason})") from None


def _from_hf_folder(folder: Path) -> tuple[Tokenizer, str | None]:
    """A folder without tokenizer.json (vocab.json + merges.txt, a SentencePiece model): convert it."""
    from transformers import AutoTokenizer

    try:
        loaded = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:  # transformers raises many types with long messages; keep the first line
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise DataError(f"tokenizer {folder}: cannot be loaded as a fast tokenizer ({reason})") from None
    backend = getattr(loaded, "backend_tokenizer", None)
    if not isinstance(backend, Tokenizer):
        raise DataError(f"tokenizer {folder}: has no fast (Rust) tokenizer; save it with tokenizer.json")
    return backend, _token_text(loaded.eos_token)


def _read(path: Path) -> tuple[Tokenizer, str | None]:
    """(tokenizer, the eos_token its config names)."""
    if path.is_file():
        if path.suffix != ".json":
            raise DataError(f"tokenizer {path}: expected a tokenizer.json file or a tokenizer folder")
        return _from_json_file(path), _configured_eos(path.parent)
    if path.is_dir():
        if (path / "tokenizer.json").is_file():
            return _from_json_file(path / "tokenizer.json"), _configured_eos(path)
        return _from_hf_folder(path)
    raise DataError(
        f"tokenizer {path}: no such file or directory; pass a folder written by `domainlm tokenizer "
        "train`, a local Hugging Face tokenizer (folder or tokenizer.json), or gpt2 / bert-base-uncased"
    )


def load_tokenizer(
    path: str | Path, *, eos_token: str | None = None, name: str | None = None
) -> LoadedTokenizer:
    """Load a local tokenizer (or a shipped one by name); `eos_token` overrides the one its config names.

    Unreadable input is a one-line DataError naming the file; an `eos_token` not in the vocabulary
    is a ConfigError. A tokenizer that names no EOS loads with eos_token None (the mix requires one).
    """
    path = Path(path)
    if not path.exists():
        path = shipped_tokenizer_dir(str(path)) or path
    tokenizer, configured = _read(path)
    tokenizer.no_truncation()
    tokenizer.no_padding()
    eos = eos_token or configured
    eos_id = None if eos is None else tokenizer.token_to_id(eos)
    if eos is not None and eos_id is None:
        raise ConfigError(
            f"tokenizer {path}: eos_token {eos!r} is not in its vocabulary; set an existing token"
        )
    label = name or (path.parent.name if path.is_file() else path.name)
    serialized = tokenizer.to_str()
    return LoadedTokenizer(
        tokenizer=tokenizer,
        path=path,
        name=label,
        eos_token=eos,
        eos_token_id=eos_id,
        vocab_size=vocab_size_of(tokenizer),
        fingerprint=fingerprint_of(tokenizer, eos_id, serialized),
        serialized=serialized,
    )


class _MixTokenizer(Protocol):
    @property
    def path(self) -> str: ...

    @property
    def fingerprint(self) -> str: ...


class MixFacts(Protocol):
    """What `check_matches_mix` reads from a mix manifest (domainlm.mix.manifest.MixManifest).

    A protocol, not an import: the tokenizer stage comes before the mix stage and does not import it.
    """

    @property
    def vocab_size(self) -> int: ...

    @property
    def eos_token_id(self) -> int: ...

    @property
    def tokenizer(self) -> _MixTokenizer: ...

    @property
    def path(self) -> Path: ...


def check_matches_mix(loaded: LoadedTokenizer, manifest: MixFacts, where: str) -> None:
    """The mix's ids mean something only under the tokenizer that wrote them: vocab size, EOS id and
    fingerprint must all match what the manifest recorded. `where` names the setting that chose
    `loaded` (e.g. "data.tokenizer"). DataError, one line naming both values and where each came from.
    """
    mix_side = f"the mix's {manifest.path}"
    ours = f"{where} {loaded.path}"
    fix = f"use the mix's tokenizer ({manifest.tokenizer.path}) or rebuild the mix with this one"
    checks = (
        ("vocab size", loaded.vocab_size, manifest.vocab_size),
        ("EOS id", loaded.eos_token_id, manifest.eos_token_id),
        ("fingerprint", loaded.fingerprint, manifest.tokenizer.fingerprint),
    )
    for what, mine, theirs in checks:
        if mine != theirs:
            if what == "fingerprint":
                mine, theirs = mine[:12], theirs[:12]  # enough to tell them apart in one line
            raise DataError(f"{ours}: tokenizer {what} {mine} but {mix_side} records {theirs}; {fix}")
