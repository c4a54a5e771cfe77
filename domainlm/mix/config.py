"""Mix YAML -> a validated MixConfig (sources with token ratios, budget, sequence length, split, seed).

```yaml
sources:                      # name -> source; the order here is the order in tables and the manifest
  finance:
    paths: [../corpora/finance.jsonl.gz]   # files, folders, globs (relative to this YAML file),
                                           # or a shipped sample: finance, legal, medical, general
    ratio: 0.51               # share of the training tokens, in (0, 1]; all ratios sum to 1
    max_repeats: 4            # epochs this source may be repeated to reach its share (1 = no repeats)
  general:
    paths: [../corpora/general.jsonl.gz]
    ratio: 0.49
total_tokens: all             # a count (50M, 1.5B) or `all`: as much as the sources allow at the ratios
seq_len: 2048
val_fraction: 0.05            # share of each source's documents held out for per-domain evaluation
seed: 0
tokenizer: ../tokenizers/gpt2 # optional here (a path, or gpt2 / bert-base-uncased); --tokenizer overrides
```
Sources are a mapping (not a list) so that `--set sources.finance.ratio=0.6` reaches one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import field_validator

from domainlm.config import (
    ConfigPath,
    CorpusPathList,
    StrictModel,
    TokenizerPath,
    load_config,
    parse_count,
    resolve_paths,
    validate_config,
)
from domainlm.errors import ConfigError, DomainLMError

# Ratios may be written with a few decimals (0.333 x 3); they must sum to 1 within this tolerance.
RATIO_SUM_TOLERANCE = 1e-6
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # used in file names under val/


def _count_or_all(value: Any, field: str) -> int | Literal["all"]:
    if isinstance(value, str) and value.strip().lower() == "all":
        return "all"
    try:
        return parse_count(value, field)
    except DomainLMError as exc:
        raise ValueError(f"{exc}, or `all`") from None


class SourceConfig(StrictModel):
    """One corpus in the mix."""

    # files, folders or globs (relative to the YAML file), or a shipped sample's name (finance, legal,
    # medical, general); a single string is accepted
    paths: CorpusPathList
    ratio: float  # target share of the training tokens, in (0, 1]
    text_field: str = "text"  # JSON key / Parquet column / dataset column holding the text
    max_repeats: float = 1.0  # most epochs over this source's tokens (>= 1; 1 = each token at most once)
    val_fraction: float | None = None  # overrides the mix-level val_fraction for this source

    @field_validator("paths", mode="before")
    @classmethod
    def _one_path_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class MixConfig(StrictModel):
    """A token-ratio mix of corpora into packed sequences."""

    sources: dict[str, SourceConfig]
    total_tokens: int | Literal["all"] = "all"  # training tokens; rounded down to whole sequences
    seq_len: int = 2048  # tokens per packed sequence
    val_fraction: float = 0.01  # share of each source's documents held out (0 = no validation set)
    seed: int = 0  # drives the held-out choice, partial-epoch choice and the sequence shuffle
    tokenizer: TokenizerPath | None = None  # HF tokenizer dir, tokenizer.json, or gpt2; --tokenizer overrides
    eos_token: str | None = None  # the document separator if the tokenizer names no eos_token
    out: ConfigPath | None = None  # output directory; --out overrides
    shard_tokens: int = 100_000_000  # tokens per training shard file (rounded down to whole sequences)

    @field_validator("total_tokens", mode="before")
    @classmethod
    def _parse_total(cls, value: Any) -> Any:
        return _count_or_all(value, "total_tokens")

    @field_validator("shard_tokens", mode="before")
    @classmethod
    def _parse_shard(cls, value: Any) -> Any:
        try:
            return parse_count(value, "shard_tokens")
        except DomainLMError as exc:
            raise ValueError(str(exc)) from None


def _source_problems(name: str, source: SourceConfig) -> list[str]:
    where = f"sources.{name}"
    problems = []
    if not _NAME_RE.match(name):
        problems.append(f"{where}: name {name!r} must be letters, digits, '_', '.' or '-' (it names files)")
    if not source.paths:
        problems.append(f"{where}.paths: no paths; name at least one file, folder or glob")
    if source.ratio <= 0 or source.ratio > 1:
        kind = "negative" if source.ratio < 0 else "not in (0, 1]"
        problems.append(f"{where}.ratio: {source.ratio} is {kind}; use a share of the tokens in (0, 1]")
    if source.max_repeats < 1:
        problems.append(f"{where}.max_repeats: {source.max_repeats} is below 1; use 1 (no repeats) or more")
    if source.val_fraction is not None and not 0 <= source.val_fraction < 1:
        problems.append(f"{where}.val_fraction: {source.val_fraction} must be in [0, 1)")
    return problems


def config_problems(config: MixConfig) -> list[str]:
    """Every rule the types cannot express, each as 'dotted.path: what is wrong; the fix'."""
    problems = []
    if not config.sources:
        problems.append("sources: no sources; name at least one corpus with paths and a ratio")
    for name, source in config.sources.items():
        problems.extend(_source_problems(name, source))
    total = sum(s.ratio for s in config.sources.values())
    if config.sources and abs(total - 1) > RATIO_SUM_TOLERANCE:
        listing = " + ".join(f"{n} {s.ratio:g}" for n, s in config.sources.items())
        problems.append(f"sources: ratios sum to {total:g} ({listing}), not 1; adjust them to sum to 1")
    if config.seq_len < 1:
        problems.append(f"seq_len: {config.seq_len} must be a positive number of tokens")
    if not 0 <= config.val_fraction < 1:
        problems.append(f"val_fraction: {config.val_fraction} must be in [0, 1)")
    if config.total_tokens != "all" and config.total_tokens < config.seq_len:
        problems.append(
            f"total_tokens: {config.total_tokens} is less than one sequence of seq_len {config.seq_len}; "
            "raise total_tokens or use `all`"
        )
    if config.shard_tokens < config.seq_len:
        problems.append(f"shard_tokens: {config.shard_tokens} is less than seq_len {config.seq_len}")
    return problems


def check_config(config: MixConfig, source: str) -> MixConfig:
    problems = config_problems(config)
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    return config


def load_mix_config(path: str | Path, overrides: list[str] | None = None) -> MixConfig:
    """YAML < --set overrides, validated; paths in the YAML are relative to its folder, in a --set
    to the working directory (`domainlm.config.load_config` owns the rule).

    Flags (--tokenizer, --out, ...) are applied by the caller with `apply_flags` and are relative
    to the working directory, as a user typing them expects.
    """
    return check_config(load_config(MixConfig, path, overrides), str(path))


def apply_flags(config: MixConfig, source: str | Path, **flags: Any) -> MixConfig:
    """Explicit CLI flags (None = not given) override the YAML and --set values, then re-check."""
    given = {key: str(v) if isinstance(v, Path) else v for key, v in flags.items() if v is not None}
    # --tokenizer / --out were typed by the user: relative to the cwd, or a shipped name (gpt2)
    data = {**config.model_dump(), **resolve_paths(MixConfig, given, None)}
    return check_config(validate_config(MixConfig, data, str(source)), str(source))
