"""Mixtures -> one proxy each: its mix YAML, a real `pretrain` run (several in one launch), per-domain bits
per byte on the shared held-out text, and a completion record (result.json).

A proxy folder holds mix.yaml, run/ (a `domainlm pretrain` run dir: the mix is built there from the
token cache, so only the first proxy tokenizes) and result.json, written last: a proxy with one is
never trained or evaluated again, so a killed search resumes where it stopped. A run killed mid-way
resumes from its last checkpoint through pretrain's own resume.

Every proxy mix uses the same seed and val_fraction, and the held-out choice depends only on those
and each source's documents (domainlm.mix.sources.HeldOut), not on the ratios: all proxies are
measured on the same bytes (checked per domain against the reference proxy's).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from domainlm.assets import SAMPLE_DOMAINS, sample_corpus, shipped_tokenizer
from domainlm.config import dump_yaml
from domainlm.errors import ConfigError
from domainlm.mixsearch.config import SearchConfig
from domainlm.outputs import atomic_write_text, remove_tree, write_json

log = logging.getLogger(__name__)

RESULT_NAME = "result.json"  # the completion record


@dataclass(frozen=True)
class Proxy:
    """One mixture to measure, and the folder that holds its run."""

    name: str
    ratios: dict[str, float]
    folder: Path

    @property
    def run_dir(self) -> Path:
        return self.folder / "run"

    @property
    def mix_yaml(self) -> Path:
        return self.folder / "mix.yaml"

    @property
    def export_dir(self) -> Path:
        return self.run_dir / "export"


@dataclass(frozen=True)
class ProxyRecipe:
    """The proxy training every mixture gets: recipe, overrides and the equal token budget."""

    recipe: str
    overrides: list[str]
    seq_len: int
    max_steps: int
    train_tokens: int  # max_steps x global batch x seq_len: each proxy's mix holds exactly these


def _portable_path(path: str) -> str:
    """A shipped sample's path as its name (finance), so the YAML works from any install."""
    for name in SAMPLE_DOMAINS:
        if Path(path) == sample_corpus(name):
            return name
    return path


def mix_data(
    config: SearchConfig, ratios: dict[str, float], seq_len: int, total: int | str, portable: bool
) -> dict:
    """A mix YAML's content for `ratios`; paths absolute, or `portable` (shipped samples by name)."""
    sources = {}
    for name, source in config.sources.items():
        entry: dict[str, Any] = {"paths": [_portable_path(p) if portable else p for p in source.paths]}
        entry |= {"ratio": round(float(ratios[name]), 6), "max_repeats": source.max_repeats}
        if source.text_field != "text":
            entry["text_field"] = source.text_field
        if source.val_fraction is not None:
            entry["val_fraction"] = source.val_fraction
        sources[name] = entry
    tokenizer = config.tokenizer
    if portable:
        tokenizer = next(
            (n for n in ("gpt2", "bert-base-uncased") if Path(tokenizer) == shipped_tokenizer(n)), tokenizer
        )
    return {
        "sources": sources,
        "total_tokens": total,
        "seq_len": seq_len,
        "val_fraction": config.val_fraction,
        "seed": config.seed,
        "tokenizer": tokenizer,
    }


def read_result(proxy: Proxy) -> dict | None:
    """The completion record, or None; a record for other ratios is a stale folder (one line)."""
    path = proxy.folder / RESULT_NAME
    if not path.is_file():
        return None
    result = json.loads(path.read_text(encoding="utf-8"))
    if any(abs(result["ratios"][n] - r) > 1e-9 for n, r in proxy.ratios.items()):
        raise ConfigError(
            f"{proxy.folder}: measured mixture {result['ratios']}, but the search now asks for {proxy.ratios} "
            "there; pass --overwrite to start the search over, or use another --out"
        )
    return result


def _mix_text(proxy: Proxy, config: SearchConfig, recipe: ProxyRecipe) -> str:
    return dump_yaml(mix_data(config, proxy.ratios, recipe.seq_len, recipe.train_tokens, portable=False))


def _write_mix_yaml(proxy: Proxy, config: SearchConfig, recipe: ProxyRecipe) -> None:
    text = _mix_text(proxy, config, recipe)
    if proxy.mix_yaml.is_file() and proxy.mix_yaml.read_text(encoding="utf-8") != text:
        raise ConfigError(
            f"{proxy.mix_yaml}: differs from the mix this search asks for; pass --overwrite or use another --out"
        )
    atomic_write_text(proxy.mix_yaml, text)


def discard_if_stale(proxy: Proxy, config: SearchConfig, recipe: ProxyRecipe) -> None:
    """Remove the folder of a derived proxy (the recommendation) trained for another mixture: an earlier
    fit (other target or constraint) recommended something else."""
    if proxy.mix_yaml.is_file() and proxy.mix_yaml.read_text(encoding="utf-8") != _mix_text(
        proxy, config, recipe
    ):
        log.info("%s: trained for an earlier recommendation; training the new one", proxy.folder)
        remove_tree(proxy.folder)


def _prepare(proxy: Proxy, config: SearchConfig, recipe: ProxyRecipe) -> Any | None:
    """The PreparedRun that finishes this proxy's training (or its export); None when already trained."""
    from domainlm.pretrain import checkpoint as ckpt
    from domainlm.pretrain.run import prepare_run

    _write_mix_yaml(proxy, config, recipe)
    found = ckpt.latest_checkpoint(proxy.run_dir)
    finished = found is not None and found[1].step >= recipe.max_steps
    if finished and (proxy.export_dir / "config.json").is_file():
        return None
    overrides = [*recipe.overrides, f"data.mix={proxy.mix_yaml}"]
    return prepare_run(recipe.recipe, overrides, proxy.run_dir, export_only=finished)


def train_proxies(proxies: list[Proxy], config: SearchConfig, recipe: ProxyRecipe) -> None:
    """Train every unfinished proxy through `pretrain`, all in one launch (one start-up of the ranks)."""
    from domainlm.pretrain.run import launch_together

    pending = [p for p in proxies if read_result(p) is None]
    prepared = [run for run in (_prepare(p, config, recipe) for p in pending) if run is not None]
    if prepared:
        log.info("training %d proxies on %d ranks: %s", len(prepared), prepared[0].spec.world_size,
                 ", ".join(run.run_dir.parent.name for run in prepared))  # fmt: skip
        launch_together(prepared)


def _realized(proxy: Proxy) -> tuple[dict[str, float], dict[str, int]]:
    """Each source's realized ratio in the built mix, and its held-out bytes."""
    from domainlm.mix.manifest import open_mix

    manifest = open_mix(proxy.run_dir / "mix")
    ratios = {s.name: s.realized_ratio for s in manifest.sources}
    return ratios, {s.name: s.val.bytes for s in manifest.sources}


def evaluate_proxy(proxy: Proxy, domains: list[Any], settings: Any, held_out_bytes: dict[str, int]) -> dict:
    """Bits per byte of the proxy's exported model on every domain; writes and returns result.json."""
    from domainlm.eval import evaluate

    found = read_result(proxy)
    if found is not None:
        return found
    realized, val_bytes = _realized(proxy)
    for name, count in val_bytes.items():  # the invariant the module docstring states
        assert count == held_out_bytes[name], f"{proxy.name}: held-out bytes of {name} differ"
    report = evaluate([f"{proxy.name}={proxy.export_dir}"], domains, settings)
    result = {
        "name": proxy.name,
        "ratios": proxy.ratios,
        "realized_ratios": realized,
        "bits_per_byte": {r.domain: r.bits_per_byte for r in report.results},
        "loss": {r.domain: r.loss for r in report.results},
    }
    write_json(proxy.folder / RESULT_NAME, result)
    return result
