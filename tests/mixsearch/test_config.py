import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from domainlm.assets import shipped_search
from domainlm.errors import ConfigError
from domainlm.mixsearch.config import load_search_config
from domainlm.mixsearch.sample import ratio_bounds, sample_mixtures
from domainlm.mixsearch.search import SearchPlan, fit_search

SEARCHES = Path(__file__).resolve().parents[2] / "searches"

BASE = """\
sources:
  finance: {paths: [finance], max_repeats: 4}
  general: {paths: [general]}
tokenizer: gpt2
target: finance
constraint: {domain: general, max_increase: 0.02}
reference: {finance: 0.5, general: 0.5}
budget: 6
held_out: 3
"""


def _yaml(tmp_path: Path, text: str = BASE) -> Path:
    path = tmp_path / "search.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("path", sorted(SEARCHES.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_searches_load(path):
    config = load_search_config(path)
    assert config.names == ["finance", "general"] and config.target_weights() == {"finance": 1.0}
    assert Path(config.sources["finance"].paths[0]).name == "finance.jsonl.gz"  # the shipped sample
    assert config.budget >= 3 + config.held_out
    assert shipped_search(path.stem) == path  # `domainlm mixsearch finance` finds it by name


def test_target_weights_and_paths(tmp_path):
    config = load_search_config(
        _yaml(tmp_path), ["target={finance: 0.75, general: 0.25}", "proxy.recipe=tiny_cpu"]
    )
    assert config.target_weights() == {"finance": 0.75, "general": 0.25}
    assert config.proxy.recipe.endswith("recipes/tiny_cpu.yaml")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("target=legal", r"target: 'legal' is not a source \(sources: finance, general\)"),
        ("target={finance: 0.5, general: 0.2}", "target: weights sum to 0.7, not 1"),
        (
            "budget=5",
            r"budget: 5 proxies cannot fit the mixing law \(3 parameters per domain\) and hold out 3; "
            "raise budget to >= 6",
        ),  # fmt: skip
        ("constraint.domain=legal", "constraint.domain: 'legal' is not a source"),
        ("reference={finance: 0.5, general: 0.4}", "reference: ratios sum to 0.9, not 1"),
        ("reference={finance: 0.99, general: 0.01}", r"reference: \{'general': 0.01\} below min_ratio 0.05"),
        ("sources.finance.ratio=0.5", "sources.finance.ratio: the search chooses the ratios; remove it"),
        (
            "proxy.overrides=[data.mix=legal_50_50]",
            r"proxy.overrides: 'data.mix=.*legal_50_50.yaml\"?' sets data.mix, which the search sets",
        ),
        ("held_out=2", "held_out: Input should be greater than or equal to 3"),
    ],
)
def test_bad_input_is_one_line(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_search_config(_yaml(tmp_path), [override])
    assert "\n" not in str(info.value)


def _plan(tmp_path: Path, max_increase: float) -> tuple[SearchPlan, list[dict]]:
    """A plan over synthetic measurements of a known law: finance falls, general rises with the finance ratio."""
    config = load_search_config(_yaml(tmp_path), [f"constraint.max_increase={max_increase}"])
    bounds = ratio_bounds(
        {"finance": 10**6, "general": 10**6}, {"finance": 4, "general": 1}, 128, 122_880, 0.05
    )
    mixtures = sample_mixtures(bounds, np.array([0.5, 0.5]), 6, 0)
    results = [
        {"name": f"p{i:02d}", "realized_ratios": {"finance": r[0], "general": r[1]},
         "bits_per_byte": {"finance": 1 + np.exp(-2 * r[0]), "general": 1 + 0.5 * np.exp(2 * r[0])}}
        for i, r in enumerate(mixtures)
    ]  # fmt: skip
    plan = SearchPlan(config, "search.yaml", tmp_path / "out", None, {}, bounds, mixtures, [3, 4, 5], "")
    return plan, results


def test_fit_recommends_the_most_finance_the_constraint_allows(tmp_path):
    plan, results = _plan(tmp_path, 0.02)
    fit = fit_search(plan, results)
    assert fit.held_out["target"]["spearman"] == pytest.approx(1.0) and fit.stated_error < 1e-6
    # general <= (1 + 0.5 e) + 0.02  <=>  r <= ln(e + 0.04) / 2 = 0.50730: the last grid point is 0.507
    assert fit.choice.ratios.tolist() == pytest.approx([0.507, 0.493])
    assert fit.limit == ("general", pytest.approx(1 + 0.5 * np.e + 0.02, abs=1e-6))


def test_a_constraint_no_mixture_meets(tmp_path):
    plan, results = _plan(tmp_path, -1.0)
    # limit: reference 1 + 0.5 e = 2.3591, - 1; lowest general at finance 0.05: 1 + 0.5 e^0.1 = 1.5526
    with pytest.raises(ConfigError, match=r"constraint: no mixture keeps general at <= 1\.3591 bits per byte .*"
                       r"the lowest predicted is 1\.5526: raise constraint.max_increase to >= -0\.8066"):  # fmt: skip
        fit_search(plan, results)


def test_cli_bad_target_exits_2_with_one_line(tmp_path):
    path = _yaml(tmp_path, BASE.replace("target: finance", "target: legal"))
    done = subprocess.run(
        [sys.executable, "-m", "domainlm", "mixsearch", str(path), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: {path}: target: 'legal' is not a source (sources: finance, general); name one of the sources"
    ]
    assert not (tmp_path / "out").exists()
