"""Mix YAML -> a validated MixConfig (sources, token ratios or phases, budget, seq_len, split, seed).

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

A mixture schedule replaces the sources' `ratio` by `phases:`, in training order, each with its
share of the training tokens and its own ratios (a source left out of a phase sits it out):
```yaml
sources:
  finance: {paths: [finance], max_repeats: 4}   # no `ratio:` here when `phases:` is given
  general: {paths: [general]}
phases:
  - {name: main, share: 0.9, ratios: {finance: 0.4, general: 0.6}}
  - {name: anneal, share: 0.1, ratios: {finance: 0.8, general: 0.2}}
```
Shares sum to 1 (of `total_tokens`, or of `all`). Instead of shares, every phase may give `tokens:`
(a count); the total is then their sum, and `total_tokens` must be `all` or that same sum.
"""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

from pydantic import field_validator

from domainlm.config import (
    ConfigPath,
    CorpusPathList,
    StrictModel,
    TokenizerPath,
    load_config,
    resolve_paths,
    validate_config,
    validated_count,
)
from domainlm.errors import ConfigError
from domainlm.mix.allocate import PhaseTarget, exact_ratios

# Ratios may be written with a few decimals (0.333 x 3); they must sum to 1 within this tolerance.
RATIO_SUM_TOLERANCE = 1e-6
MAX_SOURCES = 256  # source ids are one uint8 per sequence (domainlm.mix.shards)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # used in file names under val/


def _count_or_all(value: Any, field: str) -> int | Literal["all"]:
    if isinstance(value, str) and value.strip().lower() == "all":
        return "all"
    return validated_count(value, field, ", or `all`")


class SourceConfig(StrictModel):
    """One corpus in the mix."""

    # files, folders or globs (relative to the YAML file), or a shipped sample's name (finance, legal,
    # medical, general); a single string is accepted
    paths: CorpusPathList
    ratio: float | None = None  # target share of the training tokens, in (0, 1]; none with `phases:`
    text_field: str = "text"  # JSON key / Parquet column / dataset column holding the text
    max_repeats: float = 1.0  # most epochs over this source's tokens (>= 1; 1 = each token at most once)
    val_fraction: float | None = None  # overrides the mix-level val_fraction for this source

    @field_validator("paths", mode="before")
    @classmethod
    def _one_path_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class PhaseConfig(StrictModel):
    """One stretch of training with its own source ratios (a mixture schedule is a list of them)."""

    name: str | None = None  # in the manifest and tables; default phase0, phase1, ...
    share: float | None = None  # share of the training tokens, in (0, 1]; all phases' shares sum to 1
    tokens: int | None = None  # or a token count (50M); then every phase gives one
    ratios: dict[str, float]  # source name -> share of this phase's tokens; sum to 1

    @field_validator("tokens", mode="before")
    @classmethod
    def _parse_tokens(cls, value: Any) -> Any:
        return None if value is None else validated_count(value, "tokens")


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
    phases: list[PhaseConfig] | None = None  # a mixture schedule, in training order (see the module doc)

    @field_validator("total_tokens", mode="before")
    @classmethod
    def _parse_total(cls, value: Any) -> Any:
        return _count_or_all(value, "total_tokens")

    @field_validator("shard_tokens", mode="before")
    @classmethod
    def _parse_shard(cls, value: Any) -> Any:
        return validated_count(value, "shard_tokens")


def _source_problems(name: str, source: SourceConfig) -> list[str]:
    where = f"sources.{name}"
    problems = []
    if not _NAME_RE.match(name):
        problems.append(f"{where}: name {name!r} must be letters, digits, '_', '.' or '-' (it names files)")
    if not source.paths:
        problems.append(f"{where}.paths: no paths; name at least one file, folder or glob")
    if source.ratio is not None and not 0 < source.ratio <= 1:
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
    if len(config.sources) > MAX_SOURCES:
        problems.append(
            f"sources: {len(config.sources)} sources, more than {MAX_SOURCES} (a sequence's source id is "
            "one byte); merge some of them"
        )
    problems.extend(_ratio_problems(config) if config.phases is None else phase_problems(config))
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


def _sum_problem(where: str, what: str, shares: dict[str, float]) -> list[str]:
    total = sum(shares.values())
    if not shares or abs(total - 1) <= RATIO_SUM_TOLERANCE:
        return []
    listing = " + ".join(f"{name} {value:g}" for name, value in shares.items())
    return [f"{where}: {what} sum to {total:g} ({listing}), not 1; adjust them to sum to 1"]


def _ratio_problems(config: MixConfig) -> list[str]:
    """A mix without phases: every source has a ratio, and they sum to 1."""
    missing = [name for name, source in config.sources.items() if source.ratio is None]
    problems = [
        f"sources.{name}.ratio: missing; give every source a ratio in (0, 1], or give `phases:` with "
        "ratios per phase"
        for name in missing
    ]
    if not missing:
        ratios = {name: source.ratio for name, source in config.sources.items() if source.ratio is not None}
        problems.extend(_sum_problem("sources", "ratios", ratios))
    return problems


def phase_names(config: MixConfig) -> list[str]:
    return [phase.name or f"phase{i}" for i, phase in enumerate(config.phases or [])]


def _one_phase_problems(config: MixConfig, index: int, phase: PhaseConfig, name: str) -> list[str]:
    where = f"phases.{index}"
    problems = []
    if not _NAME_RE.match(name):
        problems.append(f"{where}.name: {name!r} must be letters, digits, '_', '.' or '-'")
    if (phase.share is None) == (phase.tokens is None):
        problems.append(f"{where}: give its `share` of the tokens or its `tokens`, exactly one of them")
    if phase.share is not None and not 0 < phase.share <= 1:
        problems.append(f"{where}.share: {phase.share} is not in (0, 1]; use a share of the training tokens")
    if phase.tokens is not None and phase.tokens < config.seq_len:
        problems.append(
            f"{where}.tokens: {phase.tokens} is less than one sequence of seq_len {config.seq_len}"
        )
    if not phase.ratios:
        problems.append(f"{where}.ratios: empty; give this phase's ratio for at least one source")
    known = ", ".join(config.sources)
    for source, ratio in phase.ratios.items():
        if source not in config.sources:
            problems.append(
                f"{where}.ratios.{source}: unknown source {source!r} (sources: {known}); "
                "name a source declared under `sources:`"
            )
        elif not 0 < ratio <= 1:
            problems.append(
                f"{where}.ratios.{source}: {ratio} is not in (0, 1]; leave the source out to skip this phase"
            )
    problems.extend(_sum_problem(f"{where}.ratios", "ratios", phase.ratios))
    return problems


def _phase_total_problems(config: MixConfig, phases: list[PhaseConfig], names: list[str]) -> list[str]:
    shares = [phase.share is not None for phase in phases]
    if any(shares) and not all(shares):
        return [
            "phases: some give a share and some tokens; give every phase a `share`, or every phase `tokens`"
        ]
    if all(shares):
        return _sum_problem(
            "phases", "shares", {n: p.share for n, p in zip(names, phases, strict=True) if p.share}
        )
    counted = sum(phase.tokens or 0 for phase in phases)
    if config.total_tokens not in ("all", counted):
        return [
            f"phases: tokens sum to {counted} but total_tokens is {config.total_tokens}; make them equal, "
            "or set total_tokens to `all` (the phases' sum)"
        ]
    return []


def phase_problems(config: MixConfig) -> list[str]:
    """A mix with phases: each phase is well formed, shares sum to 1, every source is used somewhere."""
    phases = config.phases or []
    if not phases:
        return ["phases: empty list; give at least one phase, or drop `phases:` and give sources ratios"]
    names = phase_names(config)
    problems = [
        f"sources.{name}.ratio: {source.ratio} is not used with `phases:`; give the ratio in each "
        "phase's `ratios` instead"
        for name, source in config.sources.items()
        if source.ratio is not None
    ]
    for index, (phase, name) in enumerate(zip(phases, names, strict=True)):
        problems.extend(_one_phase_problems(config, index, phase, name))
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"phases: name {name!r} is used by more than one phase; name each phase once")
    problems.extend(_phase_total_problems(config, phases, names))
    used = {source for phase in phases for source in phase.ratios}
    for name in config.sources:
        if name not in used:
            problems.append(f"sources.{name}: in no phase's ratios; give it a ratio in a phase, or remove it")
    return problems


def phase_targets(config: MixConfig) -> list[PhaseTarget] | None:
    """The checked phases as exact shares + ratios in source order (None: a mix without phases)."""
    if config.phases is None:
        return None
    if all(phase.share is not None for phase in config.phases):
        shares = exact_ratios([phase.share or 0.0 for phase in config.phases])
    else:
        counted = sum(phase.tokens or 0 for phase in config.phases)
        shares = [Fraction(phase.tokens or 0, counted) for phase in config.phases]
    return [
        PhaseTarget(name, share, tuple(phase.ratios.get(source, 0.0) for source in config.sources))
        for name, share, phase in zip(phase_names(config), shares, config.phases, strict=True)
    ]


def training_tokens(config: MixConfig) -> int | Literal["all"]:
    """total_tokens, or the phases' token counts summed when they give counts."""
    if config.phases and all(phase.tokens is not None for phase in config.phases):
        return sum(phase.tokens or 0 for phase in config.phases)
    return config.total_tokens


def target_ratios(config: MixConfig) -> list[float]:
    """Each source's share of the whole mix: its ratio, or its phase ratios weighted by the shares."""
    targets = phase_targets(config)
    if targets is None:
        return [source.ratio or 0.0 for source in config.sources.values()]
    exact = [exact_ratios(list(t.ratios)) for t in targets]
    return [
        float(sum(t.share * r[k] for t, r in zip(targets, exact, strict=True)))
        for k in range(len(config.sources))
    ]


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
