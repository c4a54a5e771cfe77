"""A mix directory -> its typed manifest (format `domainlm.mix/v1`): the ONE reader of `manifest.json`.

Plan, pretrain, eval and the demo all read a mix through `open_mix`. numpy and pydantic only: no
torch import, so `domainlm plan --mix` and `domainlm eval` start fast (tests/mix/test_manifest.py
checks this). The torch Datasets over the shards live in `domainlm.mix.dataset`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from domainlm.errors import ConfigError, DataError
from domainlm.mix.layout import DTYPES as DTYPE_NAMES
from domainlm.mix.layout import FORMAT, MANIFEST_NAME

__all__ = ["FORMAT", "MANIFEST_NAME", "MixManifest", "is_mix_dir", "open_mix"]

DTYPES = {name: np.dtype(name) for name in DTYPE_NAMES}


class _ManifestModel(BaseModel):
    # Readers ignore keys they do not know, so a newer writer's extra fields do not break them.
    model_config = ConfigDict(extra="ignore", frozen=True)


class ShardInfo(_ManifestModel):
    path: str  # relative to the mix directory
    num_sequences: int
    sha256: str


class TrainInfo(_ManifestModel):
    num_sequences: int
    num_tokens: int
    shards: list[ShardInfo]


class ValInfo(_ManifestModel):
    documents: int
    tokens: int  # all held-out tokens (EOS included), before packing into whole sequences
    bytes: int  # UTF-8 bytes of the held-out text, the denominator of bits per byte
    sequences: int
    path: str  # packed tokens, relative to the mix directory
    text_path: str  # raw held-out text (jsonl.gz), relative to the mix directory


class SourceInfo(_ManifestModel):
    name: str
    paths: list[str]
    fingerprint: str
    documents: int  # training documents (held-out ones excluded)
    available_tokens: int  # training tokens incl. one EOS per document
    target_ratio: float
    tokens_taken: int
    repeats: float  # epochs over this source's training tokens
    realized_ratio: float
    val: ValInfo


class TokenizerInfo(_ManifestModel):
    path: str
    fingerprint: (
        str  # domainlm.tokenizer.load.LoadedTokenizer.fingerprint of the tokenizer that wrote the ids
    )
    eos_token: str | None = None  # the EOS the mix put after each document (older mixes: see MixManifest)


class MixManifest(_ManifestModel):
    format: str
    seq_len: int
    dtype: str
    vocab_size: int
    eos_token_id: int
    seed: int
    tokenizer: TokenizerInfo
    config: dict
    sources: list[SourceInfo]
    train: TrainInfo
    fingerprint: str
    root: Path | None = None  # the mix directory it was read from (not stored in the file)

    @property
    def path(self) -> Path:
        """The manifest file, for messages that say where a value came from."""
        return (self.root or Path(".")) / MANIFEST_NAME

    @property
    def eos_token(self) -> str | None:
        """The EOS token string the mix was built with (recorded in `tokenizer`, else in `config`)."""
        return self.tokenizer.eos_token or self.config.get("eos_token")

    def resolve(self, relative: str) -> Path:
        if self.root is None:
            raise ConfigError("mix manifest was not read with open_mix; its files have no directory")
        return self.root / relative

    def source(self, name: str) -> SourceInfo:
        for source in self.sources:
            if source.name == name:
                return source
        names = ", ".join(s.name for s in self.sources)
        raise ConfigError(f"mix {self.root}: no source {name!r} (sources: {names})")

    def val_text_paths(self) -> list[tuple[str, Path]]:
        """(source name, held-out raw text) per source, in manifest order; a missing file is a DataError."""
        pairs = []
        for source in self.sources:
            path = self.resolve(source.val.text_path)
            if not path.is_file():
                raise DataError(
                    f"{path}: held-out text of source {source.name!r} is missing; rebuild the mix"
                )
            pairs.append((source.name, path))
        return pairs


def is_mix_dir(path: str | Path) -> bool:
    """A directory holding a manifest.json (whether it is a valid mix is open_mix's to say)."""
    path = Path(path)
    return path.is_dir() and (path / MANIFEST_NAME).is_file()


def open_mix(mix_dir: str | Path) -> MixManifest:
    """Read and validate `mix_dir/manifest.json`; one-line DataError if missing or not a domainlm mix."""
    root = Path(mix_dir)
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise DataError(
            f"{root}: no {MANIFEST_NAME}; not a mix directory (point at a `domainlm mix` output directory)"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: unreadable manifest ({exc}); rebuild the mix") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else None
        raise DataError(f"{path}: format {found!r} is not {FORMAT!r}; rebuild the mix with `domainlm mix`")
    try:
        manifest = MixManifest.model_validate({**data, "root": root})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise DataError(f"{path}: {where}: {first['msg']}; rebuild the mix with `domainlm mix`") from None
    if manifest.dtype not in DTYPES:
        raise DataError(f"{path}: dtype {manifest.dtype!r} is not one of {sorted(DTYPES)}; rebuild the mix")
    return manifest
