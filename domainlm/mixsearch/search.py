"""Search YAML -> proxies trained and measured -> a mixing law per domain -> the recommended mixture,
trained once -> recommended.yaml + report.json/md/html.

Python API (what `domainlm mixsearch` calls): `plan = resolve_search(yaml, overrides, out)` (validates,
counts tokens through the token cache, samples; writes no output), then `run_search(plan)`.
Output folder (resumable, like a pretrain run dir): search.json, proxies/pNN/{mix.yaml, run/,
result.json}, recommended/ (the same for the recommendation), recommended.yaml, report.*, tradeoff.png.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from domainlm.errors import ConfigError
from domainlm.mixsearch import fit as fitting
from domainlm.mixsearch.config import SearchConfig, load_search_config
from domainlm.mixsearch.proxies import (
    Proxy,
    ProxyRecipe,
    discard_if_stale,
    evaluate_proxy,
    mix_data,
    train_proxies,
)
from domainlm.mixsearch.sample import Bounds, fine_grid, held_out_indices, ratio_bounds, sample_mixtures
from domainlm.outputs import prepare_run_dir, to_json, write_json

log = logging.getLogger(__name__)

COMMAND = "mixsearch"  # the output marker's command
RECORD_NAME = "search.json"


@dataclass
class SearchPlan:
    """A validated search: its settings, the equal-token proxy recipe, the bounds and the mixtures."""

    config: SearchConfig
    source: str
    out: Path
    recipe: ProxyRecipe
    available: dict[str, int]
    bounds: Bounds
    mixtures: np.ndarray  # (budget, M), the reference first
    held_out: list[int]
    fingerprint: str  # of everything a proxy's numbers depend on

    def proxies(self) -> list[Proxy]:
        names = self.config.names
        return [
            Proxy(
                f"p{i:02d}",
                {n: float(r) for n, r in zip(names, row, strict=True)},
                self.out / "proxies" / f"p{i:02d}",
            )
            for i, row in enumerate(self.mixtures)
        ]

    def record(self) -> dict:
        return {
            "fingerprint": self.fingerprint,
            "search": self.source,
            "train_tokens": self.recipe.train_tokens,
            "available_tokens": self.available,
            "bounds": self.bounds.as_dict(),
            "mixtures": self.mixtures.tolist(),
            "held_out": self.held_out,
        }


def _proxy_recipe(config: SearchConfig) -> ProxyRecipe:
    """The proxy recipe with its overrides, its seq_len and equal token budget."""
    from domainlm.pretrain.config import global_batch_sequences, load_recipe, max_steps

    recipe = load_recipe(config.proxy.recipe, config.proxy.overrides)
    seq_len = recipe.data.seq_len
    if seq_len is None:
        raise ConfigError(
            f"proxy.recipe {config.proxy.recipe}: sets no data.seq_len; add data.seq_len=128 (say) to proxy.overrides"
        )
    steps = max_steps(recipe.train, seq_len)
    tokens = steps * global_batch_sequences(recipe.train, seq_len) * seq_len
    return ProxyRecipe(config.proxy.recipe, list(config.proxy.overrides), seq_len, steps, tokens)


def _available_tokens(config: SearchConfig, seq_len: int, source: str) -> dict[str, int]:
    """Each source's training tokens (held-out documents excluded), counted through the token cache."""
    from domainlm.config import validate_config
    from domainlm.mix.build import build_mix
    from domainlm.mix.config import MixConfig, check_config

    data = mix_data(config, config.reference, seq_len, "all", portable=False)
    mix = check_config(validate_config(MixConfig, data, source), source)
    result = build_mix(mix, dry_run=True, quiet=True)
    return {s.name: s.tokens for s in result.sources}


def _fingerprint(config: SearchConfig, recipe: ProxyRecipe) -> str:
    """What the proxies' numbers depend on, as the user wrote it: the recipe file's bytes and the overrides
    (not the recipe's resolved dump, which changes whenever the schema gains a field)."""
    from domainlm.pretrain.config import find_recipe

    what = {
        "sources": {n: s.model_dump(mode="json") for n, s in config.sources.items()},
        "tokenizer": config.tokenizer,
        "val_fraction": config.val_fraction,
        "seed": config.seed,
        "min_ratio": config.min_ratio,
        "reference": config.reference,
        "eval": config.proxy.model_dump(mode="json", exclude={"recipe", "overrides"}),
        "recipe": hashlib.sha256(find_recipe(recipe.recipe).read_bytes()).hexdigest(),
        "overrides": recipe.overrides,
        "tokens": [recipe.seq_len, recipe.max_steps, recipe.train_tokens],
    }
    return hashlib.sha256(to_json(what).encode()).hexdigest()


def _check_resumable(out: Path, fingerprint: str, overwrite: bool) -> None:
    path = out / RECORD_NAME
    if overwrite or not path.is_file():
        return
    if json.loads(path.read_text(encoding="utf-8"))["fingerprint"] != fingerprint:
        raise ConfigError(
            f"--out {out}: holds proxies of a search with other sources, reference, seed or proxy recipe; "
            "pass --overwrite to start over, or use another --out"
        )


def _check_reference(config: SearchConfig, bounds: Bounds, source: str) -> np.ndarray:
    reference = np.array([config.reference[n] for n in config.names])
    for name, ratio, high, why in zip(config.names, reference, bounds.high, bounds.why_high, strict=True):
        if ratio > high + 1e-9:
            raise ConfigError(
                f"{source}: reference.{name} {ratio:g} is above its limit {high:.4f} ({why}); lower it"
            )
    return reference


def resolve_search(
    path: str | Path, overrides: list[str] | None, out: Path, overwrite: bool = False
) -> SearchPlan:
    """Validate everything and choose the mixtures; reads (and fills the token cache), writes no output."""
    source = str(path)
    config = load_search_config(path, overrides)
    recipe = _proxy_recipe(config)
    fingerprint = _fingerprint(config, recipe)
    out = Path(out).resolve()
    _check_resumable(out, fingerprint, overwrite)
    available = _available_tokens(config, recipe.seq_len, source)
    repeats = {n: s.max_repeats for n, s in config.sources.items()}
    bounds = ratio_bounds(available, repeats, recipe.seq_len, recipe.train_tokens, config.min_ratio)
    reference = _check_reference(config, bounds, source)
    mixtures = sample_mixtures(bounds, reference, config.budget, config.seed)
    held_out = held_out_indices(mixtures, config.held_out, config.seed)
    return SearchPlan(config, source, out, recipe, available, bounds, mixtures, held_out, fingerprint)


@dataclass
class FitResult:
    """The laws (all proxies), their held-out accuracy (a fit without the held-out proxies), the choice."""

    laws: dict[str, fitting.MixingLaw]
    validation_laws: dict[str, fitting.MixingLaw]
    held_out: dict[str, dict]  # domain (and "target") -> rmse, max_abs_error, spearman
    stated_error: float  # held-out RMSE of the target objective: the error the prediction is stated with
    limit: tuple[str, float] | None  # the constraint domain and its bits-per-byte ceiling
    reference_predicted: dict[str, float]
    grid: np.ndarray
    choice: fitting.Choice


def _fit_all(
    ratios: np.ndarray, measured: dict[str, np.ndarray], rows: list[int]
) -> dict[str, fitting.MixingLaw]:
    return {d: fitting.fit_law(ratios[rows], values[rows]) for d, values in measured.items()}


def fit_search(plan: SearchPlan, results: list[dict]) -> FitResult:
    """Fit, measure the fit on the held-out proxies, predict the grid, choose under the constraint."""
    config = plan.config
    ratios = np.array([[r["realized_ratios"][n] for n in config.names] for r in results])
    measured = {d: np.array([r["bits_per_byte"][d] for r in results]) for d in config.names}
    weights = config.target_weights()
    train_rows = [i for i in range(len(results)) if i not in plan.held_out]
    validation = _fit_all(ratios, measured, train_rows)
    held = plan.held_out
    accuracy = {d: fitting.accuracy(validation[d].predict(ratios[held]), measured[d][held]) for d in measured}
    target_measured = sum(w * measured[d] for d, w in weights.items())
    target_predicted = fitting.objective(validation, weights, ratios[held])
    accuracy["target"] = fitting.accuracy(target_predicted, target_measured[held])
    laws = _fit_all(ratios, measured, list(range(len(results))))
    reference = {d: float(law.predict(ratios[0])[0]) for d, law in laws.items()}
    limit = None
    if config.constraint is not None:
        domain = config.constraint.domain
        limit = (domain, reference[domain] + config.constraint.max_increase)
    grid = fine_grid(plan.bounds, config.grid_points)
    choice = fitting.best_mixture(laws, weights, grid, limit)
    if choice is None:
        assert limit is not None
        lowest = float(np.min(laws[limit[0]].predict(grid)))
        raise ConfigError(
            f"{plan.source}: constraint: no mixture keeps {limit[0]} at <= {limit[1]:.4f} bits per byte (the "
            f"reference's predicted {reference[limit[0]]:.4f} + max_increase {config.constraint.max_increase:g}); "
            f"the lowest predicted is {lowest:.4f}: raise constraint.max_increase to >= "
            f"{lowest - reference[limit[0]]:.4f} (the proxies are kept: rerun reuses them)"
        )
    return FitResult(laws, validation, accuracy, accuracy["target"]["rmse"], limit, reference, grid, choice)


@dataclass
class SearchResult:
    plan: SearchPlan
    results: list[dict]
    fit: FitResult
    recommended: dict | None  # the recommended mixture's measured result (None: not trained)
    report: Path


def _measure(plan: SearchPlan, proxies: list[Proxy], settings) -> list[dict]:
    """Train the unfinished proxies in one launch, then evaluate each on the reference proxy's held-out text."""
    from domainlm.eval import load_domains
    from domainlm.mix.manifest import open_mix

    train_proxies(proxies, plan.config, plan.recipe)
    reference_mix = plan.out / "proxies" / "p00" / "run" / "mix"  # the same held-out text as every proxy's
    domains = load_domains([str(reference_mix)], plan.config.proxy.eval_max_docs)
    held_bytes = {s.name: s.val.bytes for s in open_mix(reference_mix).sources}
    return [evaluate_proxy(p, domains, settings, held_bytes) for p in proxies]


def run_search(plan: SearchPlan, overwrite: bool = False) -> SearchResult:
    """Train and measure the proxies (reusing finished ones), fit, recommend, train the recommendation, report."""
    from domainlm.eval import EvalSettings
    from domainlm.mixsearch.report import write_recommended_yaml, write_reports

    out = prepare_run_dir(plan.out, command=COMMAND, overwrite=overwrite)
    write_json(out / RECORD_NAME, plan.record())
    settings = EvalSettings(max_length=plan.recipe.seq_len, stride=plan.config.proxy.eval_stride)
    results = _measure(plan, plan.proxies(), settings)
    fit = fit_search(plan, results)
    names = plan.config.names
    chosen = {n: float(r) for n, r in zip(names, fit.choice.ratios, strict=True)}
    write_recommended_yaml(out / "recommended.yaml", plan, chosen, fit)
    recommended = None
    if plan.config.train_recommended:
        proxy = Proxy("recommended", chosen, out / "recommended")
        discard_if_stale(proxy, plan.config, plan.recipe)
        recommended = _measure(plan, [proxy], settings)[0]
    report = write_reports(out, plan, results, fit, recommended)
    return SearchResult(plan, results, fit, recommended, report)


def search(
    path: str | Path, out: Path, overrides: list[str] | None = None, overwrite: bool = False
) -> SearchResult:
    """resolve_search + run_search: the whole search."""
    return run_search(resolve_search(path, overrides, out, overwrite), overwrite=overwrite)
