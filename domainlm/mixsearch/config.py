"""Search YAML (+ --set overrides) -> a validated SearchConfig: sources, target, constraint, proxy, budget.

```yaml
sources:                        # as in a mix YAML (domainlm.mix.config.SourceConfig), without `ratio:`
  finance: {paths: [finance], max_repeats: 4}
  general: {paths: [general]}
tokenizer: gpt2
target: finance                 # the domain to improve, or weights over domains: {finance: 0.8, general: 0.2}
constraint:                     # optional: a domain whose bits per byte may rise at most max_increase
  domain: general               # over the reference mixture's (both as the fit predicts them)
  max_increase: 0.02
reference: {finance: 0.5, general: 0.5}   # always trained as a proxy; the constraint's baseline
min_ratio: 0.05                 # every source keeps at least this share (its held-out text is measured)
budget: 10                      # proxy runs, the reference included
held_out: 3                     # proxies kept out of the fit to measure it
proxy:
  recipe: tiny_cpu              # a shipped recipe name or a recipe YAML (relative to this file)
  overrides: [train.max_steps=60, model.hidden_size=64]
```
The proxy recipe's `data.seq_len`, steps and batch fix the tokens every proxy trains on (equal tokens);
a source's repetition limit is max_repeats x its available tokens over those tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field

from domainlm.assets import shipped_recipes_dir
from domainlm.config import OverridesFor, PathField, StrictModel, TokenizerPath, load_config
from domainlm.errors import ConfigError
from domainlm.mix.config import RATIO_SUM_TOLERANCE, SourceConfig


def shipped_recipe(name: str) -> Path | None:
    """'tiny_cpu' -> the shipped recipe YAML; None when no shipped recipe has that name."""
    path = shipped_recipes_dir() / f"{name}.yaml"
    return path if name and "/" not in name and path.is_file() else None


RecipePath = Annotated[str, PathField(shipped=shipped_recipe)]


def _recipe_model() -> type[StrictModel]:
    from domainlm.pretrain.config import Recipe

    return Recipe


# Recipe keys the search sets for every proxy; a user override of one would be silently replaced.
OWNED_KEYS = ("data.mix", "data.build_dir", "data.mix_overrides")


class ConstraintConfig(StrictModel):
    """A domain that must not get much worse than under the reference mixture."""

    domain: str  # a source name
    max_increase: float = 0.0  # bits per byte it may rise over the reference mixture (predicted)


class ProxyConfig(StrictModel):
    """How each mixture is measured: one small pretraining run, then per-domain bits per byte."""

    recipe: RecipePath = "tiny_cpu"  # shipped recipe name or recipe YAML
    overrides: Annotated[list[str], OverridesFor(_recipe_model)] = Field(default_factory=list)
    eval_max_docs: int | None = Field(None, gt=0)  # held-out documents per domain; None = all
    eval_stride: int | None = Field(None, gt=0)  # tokens scored per window; None = seq_len // 2


class SearchConfig(StrictModel):
    """A measured search for the best mixture of `sources` for `target` under `constraint`."""

    sources: dict[str, SourceConfig]
    tokenizer: TokenizerPath
    val_fraction: float = 0.05  # share of each source's documents held out (the proxies' eval text)
    seed: int = 0  # drives the samples, the held-out proxies and every proxy mix (same held-out text)
    target: str | dict[str, float]  # a domain, or weights over domains summing to 1
    constraint: ConstraintConfig | None = None
    reference: dict[str, float]  # ratios of the reference mixture (each >= min_ratio, sum 1)
    min_ratio: float = 0.05  # lower bound of every source's ratio in the samples and the grid
    budget: int = Field(gt=0)  # proxy runs, the reference included
    held_out: int = Field(3, ge=3)  # proxies out of the fit (a rank correlation needs >= 3)
    grid_points: int = Field(200_000, gt=1)  # most mixtures predicted on the fine grid
    train_recommended: bool = True  # train the recommended mixture once and report measured vs predicted
    proxy: ProxyConfig = Field(default_factory=ProxyConfig)

    @property
    def names(self) -> list[str]:
        return list(self.sources)

    def target_weights(self) -> dict[str, float]:
        return {self.target: 1.0} if isinstance(self.target, str) else dict(self.target)


def num_law_parameters(num_sources: int) -> int:
    """Parameters of one domain's mixing law c + k exp(t . r): c, k and one t per source but the last."""
    return num_sources + 1


def _unknown(where: str, names: list[str], known: list[str]) -> list[str]:
    listing = ", ".join(known)
    return [
        f"{where}: {name!r} is not a source (sources: {listing}); name one of the sources"
        for name in names
        if name not in known
    ]


def _target_problems(config: SearchConfig) -> list[str]:
    weights = config.target_weights()
    problems = _unknown("target", list(weights), config.names)
    if any(w < 0 for w in weights.values()):
        problems.append(f"target: weights {weights} include a negative one; use weights >= 0 summing to 1")
    elif abs(sum(weights.values()) - 1) > RATIO_SUM_TOLERANCE:
        problems.append(f"target: weights sum to {sum(weights.values()):g}, not 1; adjust them")
    return problems


def _reference_problems(config: SearchConfig) -> list[str]:
    ref, names = config.reference, config.names
    problems = _unknown("reference", list(ref), names)
    missing = [n for n in names if n not in ref]
    if missing:
        problems.append(f"reference: no ratio for {', '.join(missing)}; give every source a ratio")
    low = {n: r for n, r in ref.items() if r < config.min_ratio - 1e-12}
    if low:
        problems.append(
            f"reference: {low} below min_ratio {config.min_ratio:g}; raise them or lower min_ratio"
        )
    if abs(sum(ref.values()) - 1) > RATIO_SUM_TOLERANCE:
        problems.append(f"reference: ratios sum to {sum(ref.values()):g}, not 1; adjust them")
    return problems


def _source_problems(config: SearchConfig) -> list[str]:
    problems = []
    if len(config.sources) < 2:
        problems.append(f"sources: {len(config.sources)} source(s); a mixture search needs at least two")
    for name, source in config.sources.items():
        if source.ratio is not None:
            problems.append(f"sources.{name}.ratio: the search chooses the ratios; remove it")
        if source.max_repeats < 1:
            problems.append(f"sources.{name}.max_repeats: {source.max_repeats} is below 1; use 1 or more")
    if not 0 < config.min_ratio * len(config.sources) <= 1:
        problems.append(
            f"min_ratio: {config.min_ratio:g} x {len(config.sources)} sources must be in (0, 1]; lower it"
        )
    if not 0 < config.val_fraction < 1:
        problems.append(
            f"val_fraction: {config.val_fraction} must be in (0, 1): the proxies need held-out text"
        )
    return problems


def _proxy_problems(config: SearchConfig) -> list[str]:
    problems = []
    for text in config.proxy.overrides:
        key = text.partition("=")[0].strip()
        if key in OWNED_KEYS:
            problems.append(
                f"proxy.overrides: {text!r} sets {key}, which the search sets for each proxy; remove it"
            )
    return problems


def config_problems(config: SearchConfig) -> list[str]:
    """Every rule the types cannot express, as 'dotted.key: what is wrong; the fix'."""
    problems = _source_problems(config) + _target_problems(config) + _reference_problems(config)
    if config.constraint is not None:
        problems += _unknown("constraint.domain", [config.constraint.domain], config.names)
    problems += _proxy_problems(config)
    needed = num_law_parameters(len(config.sources)) + config.held_out
    if config.budget < needed:
        problems.append(
            f"budget: {config.budget} proxies cannot fit the mixing law ({num_law_parameters(len(config.sources))} "
            f"parameters per domain) and hold out {config.held_out}; raise budget to >= {needed} or lower held_out"
        )
    return problems


def load_search_config(path: str | Path, overrides: list[str] | None = None) -> SearchConfig:
    """YAML < --set overrides, validated; paths in the YAML are relative to its folder."""
    config = load_config(SearchConfig, path, overrides)
    problems = config_problems(config)
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    return config
