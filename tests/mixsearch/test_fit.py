import numpy as np
import pytest

from domainlm.mixsearch.fit import MixingLaw, accuracy, best_mixture, fit_law, spearman


def test_fit_recovers_a_two_source_law():
    finance = np.linspace(0.05, 0.95, 7)
    ratios = np.column_stack([finance, 1 - finance])
    losses = 1.5 + 0.8 * np.exp(-2.0 * finance)
    law = fit_law(ratios, losses)
    assert law.c == pytest.approx(1.5, abs=1e-6)
    assert law.k == pytest.approx(0.8, abs=1e-6)
    assert law.t == pytest.approx((-2.0, 0.0), abs=1e-5)
    assert law.predict(np.array([0.5, 0.5]))[0] == pytest.approx(1.5 + 0.8 * np.exp(-1.0), abs=1e-9)


def test_fit_recovers_a_three_source_law_with_noise():
    ratios = np.random.default_rng(1).dirichlet([1, 1, 1], 16)
    exact = 1.2 + 0.5 * np.exp(ratios @ np.array([-3.0, 1.0, 0.0]))
    noisy = exact + np.random.default_rng(2).normal(0, 1e-4, len(exact))
    law = fit_law(ratios, noisy)
    assert law.t == pytest.approx((-3.0, 1.0, 0.0), abs=0.05)
    assert np.max(np.abs(law.predict(ratios) - exact)) < 3e-4


def test_spearman_and_accuracy():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)  # 1 - 6 * 2 / (4 * 15)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert np.isnan(spearman([1, 2, 3], [5, 5, 5]))
    metrics = accuracy(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.3, 2.6]))
    assert metrics["rmse"] == pytest.approx(np.sqrt((0.09 + 0.16) / 3))
    assert metrics["max_abs_error"] == pytest.approx(0.4) and metrics["spearman"] == pytest.approx(1.0)


def test_best_mixture_respects_the_constraint():
    finance = np.linspace(0.05, 0.95, 91)
    grid = np.column_stack([finance, 1 - finance])
    laws = {
        "finance": MixingLaw(1.0, 1.0, (-2.0, 0.0)),  # falls as finance grows
        "general": MixingLaw(1.0, 0.5, (2.0, 0.0)),  # rises as finance grows
    }
    free = best_mixture(laws, {"finance": 1.0}, grid, None)
    assert free.ratios.tolist() == pytest.approx([0.95, 0.05])
    # general <= 1 + 0.5 e^(2 r) <= 2.0  <=>  r <= ln(2) / 2 = 0.3466: the grid's last point under it is 0.34
    held = best_mixture(laws, {"finance": 1.0}, grid, ("general", 2.0))
    assert held.ratios.tolist() == pytest.approx([0.34, 0.66])
    assert held.num_feasible == 30 and held.predicted["general"] <= 2.0
    assert held.objective == pytest.approx(1 + np.exp(-0.68))
    assert best_mixture(laws, {"finance": 1.0}, grid, ("general", 1.5)) is None
