"""A finished search -> recommended.yaml (a data_mixes/-style mix) + report.json, report.md, report.html and
tradeoff.png (predicted target vs constraint-domain bits per byte over the grid, with the proxies on it).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from domainlm.config import dump_yaml
from domainlm.mixsearch.fit import objective
from domainlm.mixsearch.proxies import mix_data
from domainlm.outputs import atomic_write_text, write_json

if TYPE_CHECKING:
    from domainlm.mixsearch.search import FitResult, SearchPlan

REPORT_FORMAT = "domainlm.mixsearch/v1"
PLOT_NAME = "tradeoff.png"
LAW = "L_d(r) = c_d + k_d exp(sum_j t_dj r_j) (Ye et al., 2024, Data Mixing Laws); numpy least squares"


def _ratios_text(ratios: dict[str, float]) -> str:
    return " / ".join(f"{n} {r:.3f}" for n, r in ratios.items())


def write_recommended_yaml(path: Path, plan: SearchPlan, ratios: dict[str, float], fit: FitResult) -> Path:
    """The recommendation as a mix YAML (`domainlm mix` or a recipe's data.mix reads it)."""
    predicted = ", ".join(f"{d} {v:.4f}" for d, v in fit.choice.predicted.items())
    header = (
        f"# Recommended by `domainlm mixsearch {plan.source}`: predicted bits per byte {predicted}\n"
        f"# (target {fit.choice.objective:.4f} +- {fit.stated_error:.4f}, the fit's held-out RMSE), from "
        f"{len(plan.mixtures)} proxies of {plan.recipe.train_tokens:,} tokens each. total_tokens `all`: as\n"
        "# much as the sources allow at these ratios; set a count for your run. See report.html next to this file.\n"
    )
    data = mix_data(plan.config, ratios, plan.recipe.seq_len, "all", portable=True)
    atomic_write_text(path, header + dump_yaml(data))
    return path


def _proxy_rows(plan: SearchPlan, results: list[dict], fit: FitResult) -> list[dict]:
    weights = plan.config.target_weights()
    rows = []
    for index, result in enumerate(results):
        realized = np.array([[result["realized_ratios"][n] for n in plan.config.names]])
        laws = fit.validation_laws if index in plan.held_out else fit.laws
        rows.append({
            "name": result["name"],
            "role": "reference" if index == 0 else "held out" if index in plan.held_out else "fit",
            "ratios": result["realized_ratios"],
            "bits_per_byte": result["bits_per_byte"],
            "target": sum(w * result["bits_per_byte"][d] for d, w in weights.items()),
            "predicted": {d: float(law.predict(realized)[0]) for d, law in laws.items()},
            "predicted_target": float(objective(laws, weights, realized)[0]),
        })  # fmt: skip
    return rows


def _measured(plan: SearchPlan, results: list[dict], fit: FitResult, recommended: dict | None) -> dict | None:
    """The recommendation trained once: measured vs predicted, and against the reference proxy."""
    if recommended is None:
        return None
    weights, reference = plan.config.target_weights(), results[0]["bits_per_byte"]
    bpb = recommended["bits_per_byte"]
    target = sum(w * bpb[d] for d, w in weights.items())
    reference_target = sum(w * reference[d] for d, w in weights.items())
    out = {
        "ratios": recommended["realized_ratios"],
        "bits_per_byte": bpb,
        "target": target,
        "predicted_target": fit.choice.objective,
        "error": target - fit.choice.objective,
        "within_stated_error": abs(target - fit.choice.objective) <= fit.stated_error,
        "reference_target": reference_target,
        "beats_reference_on_target": target < reference_target,
    }
    constraint = plan.config.constraint
    if constraint is not None:
        ceiling = reference[constraint.domain] + constraint.max_increase
        out["constraint_measured"] = {
            "domain": constraint.domain,
            "bits_per_byte": bpb[constraint.domain],
            "reference": reference[constraint.domain],
            "limit": ceiling,
            "met": bpb[constraint.domain] <= ceiling,
        }
    return out


def report_data(plan: SearchPlan, results: list[dict], fit: FitResult, recommended: dict | None) -> dict:
    config, names = plan.config, plan.config.names
    choice = fit.choice
    constraint = None
    if fit.limit is not None:
        constraint = {"domain": fit.limit[0], "max_increase": config.constraint.max_increase,
                      "reference_predicted": fit.reference_predicted[fit.limit[0]], "limit": fit.limit[1]}  # fmt: skip
    return {
        "format": REPORT_FORMAT,
        "search": plan.source,
        "target": config.target_weights(),
        "reference": config.reference,
        "proxy": {
            "recipe": plan.recipe.recipe,
            "overrides": plan.recipe.overrides,
            "seq_len": plan.recipe.seq_len,
            "max_steps": plan.recipe.max_steps,
            "train_tokens": plan.recipe.train_tokens,
        },  # fmt: skip
        "available_tokens": plan.available,
        "bounds": plan.bounds.as_dict(),
        "law": LAW,
        "proxies": _proxy_rows(plan, results, fit),
        "fit": {
            "laws": {d: law.as_dict() for d, law in fit.laws.items()},
            "held_out_proxies": [results[i]["name"] for i in plan.held_out],
            "held_out": fit.held_out,
            "stated_error": fit.stated_error,
            # how far the mixtures move each domain: compare with the held-out RMSE to judge separation
            "measured_range": {
                d: float(np.ptp([r["bits_per_byte"][d] for r in results]))
                for d in results[0]["bits_per_byte"]
            },
        },
        "recommendation": {
            "ratios": dict(zip(names, choice.ratios.tolist(), strict=True)),
            "predicted": choice.predicted,
            "predicted_target": choice.objective,
            "stated_error": fit.stated_error,
            "constraint": constraint,
            "grid_points": len(fit.grid),
            "feasible_grid_points": choice.num_feasible,
        },
        "measured": _measured(plan, results, fit, recommended),
    }


def _axes_domains(data: dict) -> tuple[str, str]:
    """x: the constraint domain (else the first domain outside the target); y: the target objective."""
    constraint = data["recommendation"]["constraint"]
    if constraint is not None:
        return constraint["domain"], "target"
    outside = [d for d in data["available_tokens"] if d not in data["target"]]
    return (outside or list(data["available_tokens"]))[0], "target"


def plot_tradeoff(data: dict, fit: FitResult, weights: dict[str, float], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x_domain, _ = _axes_domains(data)
    xs, ys = fit.laws[x_domain].predict(fit.grid), objective(fit.laws, weights, fit.grid)
    order = np.argsort(xs)
    fig, ax = plt.subplots(figsize=(7.5, 4.6), dpi=110)
    ax.plot(xs[order], ys[order], color="#0072B2", lw=1.5, label="predicted over the grid")
    for role, marker, color in (
        ("fit", "o", "#009E73"),
        ("held out", "s", "#D55E00"),
        ("reference", "D", "#000000"),
    ):
        rows = [p for p in data["proxies"] if p["role"] == role]
        ax.scatter([p["bits_per_byte"][x_domain] for p in rows], [p["target"] for p in rows], marker=marker,
                   color=color, label=f"proxy ({role}), measured", zorder=3)  # fmt: skip
    rec = data["recommendation"]
    ax.scatter([rec["predicted"][x_domain]], [rec["predicted_target"]], marker="*", s=180, color="#CC79A7",
               label="recommended, predicted", zorder=4)  # fmt: skip
    if data["measured"] is not None:
        m = data["measured"]
        ax.scatter([m["bits_per_byte"][x_domain]], [m["target"]], marker="*", s=180, facecolors="none",
                   edgecolors="#CC79A7", label="recommended, measured", zorder=4)  # fmt: skip
    if rec["constraint"] is not None:
        ax.axvline(rec["constraint"]["limit"], color="#999999", ls="--", label=f"{x_domain} limit")
    ax.set_xlabel(f"{x_domain} bits per byte (held-out)")
    ax.set_ylabel("target bits per byte (" + " + ".join(f"{w:g} {d}" for d, w in weights.items()) + ")")
    ax.set_title("Mixture trade-off: lower-left is better")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    fig.savefig(out, format="png", metadata={"Software": None})
    plt.close(fig)


def _table(data: dict) -> tuple[list[str], list[list[str]]]:
    domains = list(data["available_tokens"])
    header = ["proxy", "role", "ratios"] + [f"{d} bpb (pred)" for d in domains] + ["target (pred)"]
    rows = []
    for p in data["proxies"]:
        cells = [f"{p['bits_per_byte'][d]:.4f} ({p['predicted'][d]:.4f})" for d in domains]
        rows.append([p["name"], p["role"], _ratios_text(p["ratios"]), *cells,
                     f"{p['target']:.4f} ({p['predicted_target']:.4f})"])  # fmt: skip
    return header, rows


def _summary_lines(data: dict) -> list[str]:
    rec, fit = data["recommendation"], data["fit"]
    lines = [
        f"Recommended mixture: {_ratios_text(rec['ratios'])}; predicted target {rec['predicted_target']:.4f} "
        f"+- {rec['stated_error']:.4f} bits per byte ({rec['feasible_grid_points']:,} of {rec['grid_points']:,} "
        "grid mixtures meet the constraint).",
        "Held-out proxies (" + ", ".join(fit["held_out_proxies"]) + "): " + "; ".join(
            f"{d}: Spearman {a['spearman']:.3f}, RMSE {a['rmse']:.4f}" for d, a in fit["held_out"].items()),
    ]  # fmt: skip
    if rec["constraint"] is not None:
        c = rec["constraint"]
        lines.append(f"Constraint: {c['domain']} <= {c['limit']:.4f} (reference predicted "
                     f"{c['reference_predicted']:.4f} + {c['max_increase']:g}).")  # fmt: skip
    m = data["measured"]
    if m is not None:
        lines.append(
            f"Trained once: measured target {m['target']:.4f} vs predicted {m['predicted_target']:.4f} (error "
            f"{m['error']:+.4f}, {'within' if m['within_stated_error'] else 'outside'} the stated error); "
            f"reference proxy {m['reference_target']:.4f} ({'beaten' if m['beats_reference_on_target'] else 'not beaten'})."
        )
        if "constraint_measured" in m:
            c = m["constraint_measured"]
            lines.append(f"Measured {c['domain']}: {c['bits_per_byte']:.4f} vs limit {c['limit']:.4f} "
                         f"(reference {c['reference']:.4f}): {'met' if c['met'] else 'NOT met'}.")  # fmt: skip
    return lines


def _markdown(data: dict) -> str:
    header, rows = _table(data)
    lines = ["# domainlm mixsearch", "", f"Search: `{data['search']}`. Law: {data['law']}.", ""]
    lines += [f"- {line}" for line in _summary_lines(data)] + ["", f"![trade-off]({PLOT_NAME})", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _html(data: dict) -> str:
    from domainlm.tokenizer.report import REPORT_CSS, html_table

    header, rows = _table(data)
    escaped = [[html.escape(c) for c in row] for row in rows]
    summary = "".join(f"<li>{html.escape(line)}</li>" for line in _summary_lines(data))
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>domainlm mixsearch</title>'
        f"<style>{REPORT_CSS}</style></head><body><main><h1>Mixture search</h1>"
        f'<p class="muted">{html.escape(data["search"])}; law: {html.escape(data["law"])}</p>'
        f'<ul>{summary}</ul><img alt="trade-off" src="{PLOT_NAME}">'
        f"<h2>Proxies (measured, predicted)</h2>{html_table(header, escaped, 3)}"
        '<p><a href="report.json">report.json</a> · <a href="recommended.yaml">recommended.yaml</a></p>'
        "</main></body></html>\n"
    )


def write_reports(out: Path, plan: SearchPlan, results: list[dict], fit: FitResult, recommended: Any) -> Path:
    """report.json, report.md, tradeoff.png and report.html in `out`; returns report.html."""
    data = report_data(plan, results, fit, recommended)
    write_json(out / "report.json", data)
    plot_tradeoff(data, fit, plan.config.target_weights(), out / PLOT_NAME)
    atomic_write_text(out / "report.md", _markdown(data))
    atomic_write_text(out / "report.html", _html(data))
    return out / "report.html"
