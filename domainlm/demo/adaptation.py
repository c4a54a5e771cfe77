"""Eval report + run specs + metrics.jsonl of (a), (b), (c) -> the domain-adaptation comparison: one row
per model (what it trained on, tokens, bits per byte per domain), headline sentences, held-out curves.

Every number is read from the artifacts the steps wrote; nothing here trains or evaluates.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from domainlm.demo.steps import CONTINUED, DOMAIN, GENERAL, UNTRAINED
from domainlm.pretrain.metrics import read_metrics
from domainlm.pretrain.spec import read_run_spec

# name in the evaluation -> (label, what it trained on)
STORY = {
    UNTRAINED: ("untrained", "nothing: (a) and (b)'s shared initialization"),
    GENERAL: ("(a) general only", "general text"),
    DOMAIN: ("(b) domain mix", "51% finance / 49% general, from scratch"),
    CONTINUED: ("(c) continued", "(a), then (b)'s mix, recipe and tokens"),
}
COLORS = {GENERAL: "#0072B2", DOMAIN: "#D55E00", CONTINUED: "#009E73"}  # Okabe-Ito, colour-blind safe


@dataclass(frozen=True)
class ModelRow:
    """One model of the comparison."""

    name: str  # as the evaluation names it (eval --model NAME=DIR)
    label: str
    trained_on: str
    tokens: int  # training tokens seen in all: (c) counts (a)'s too
    bits_per_byte: dict[str, float]  # domain -> held-out bits per byte

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "trained_on": self.trained_on,
                "tokens": self.tokens, "bits_per_byte": self.bits_per_byte}  # fmt: skip


def run_tokens(run_dir: Path) -> int:
    """Tokens one finished run trained on: its steps x tokens per step (from its run spec)."""
    spec = read_run_spec(run_dir)
    return spec.max_steps * spec.tokens_per_step


def model_rows(out_dir: Path, bits_per_byte: dict[str, dict[str, float]]) -> list[ModelRow]:
    """The four models in the order of the story, with the tokens each has seen."""
    tokens = {name: run_tokens(out_dir / name) for name in (GENERAL, DOMAIN, CONTINUED)}
    seen = {UNTRAINED: 0, GENERAL: tokens[GENERAL], DOMAIN: tokens[DOMAIN],
            CONTINUED: tokens[GENERAL] + tokens[CONTINUED]}  # fmt: skip
    return [ModelRow(name, *STORY[name], seen[name], bits_per_byte[name]) for name in STORY]


def tokens_label(row: ModelRow, rows: list[ModelRow]) -> str:
    """'307,200', or for (c) '307,200 + 307,200' ((a)'s, then its own on the mix)."""
    if row.name != CONTINUED:
        return f"{row.tokens:,}"
    general = next(r.tokens for r in rows if r.name == GENERAL)
    return f"{general:,} + {row.tokens - general:,}"


def _change(new: float, old: float) -> str:
    return f"{new:.3f} vs {old:.3f} bits/byte ({(new - old) / old:+.1%})"


def headlines(rows: list[ModelRow], target: str = "finance") -> list[str]:
    """What the table says, in sentences computed from it: (b) against (a), then (c)."""
    by_name = {r.name: r for r in rows}
    a, b, c = by_name[GENERAL], by_name[DOMAIN], by_name[CONTINUED]
    lines = [f"{target}: (b) domain mix {_change(b.bits_per_byte[target], a.bits_per_byte[target])} "
             f"for (a) general only, at equal tokens ({a.tokens:,}) and seed"]  # fmt: skip
    lines += [f"{domain}: (b) {_change(b.bits_per_byte[domain], a.bits_per_byte[domain])} for (a)"
              for domain in a.bits_per_byte if domain != target]  # fmt: skip
    per_domain = ", ".join(f"{d} {v:.3f}" for d, v in c.bits_per_byte.items())
    lines.append(
        f"(c) continued from (a) on the mix: {per_domain} bits/byte after {tokens_label(c, rows)} tokens"
    )
    return lines


def heldout_curves(out_dir: Path) -> dict[str, list[dict]]:
    """Each run's in-training held-out evaluations, with `tokens`: tokens seen in all at that step."""
    offset = {GENERAL: 0, DOMAIN: 0, CONTINUED: run_tokens(out_dir / GENERAL)}
    curves = {}
    for name in (GENERAL, DOMAIN, CONTINUED):
        per_step = read_run_spec(out_dir / name).tokens_per_step
        evals = [m for m in read_metrics(out_dir / name / "metrics.jsonl") if m.get("kind") == "eval"]
        curves[name] = [{**m, "tokens": offset[name] + m["step"] * per_step} for m in evals]
    return curves


def plot_heldout(curves: dict[str, list[dict]], out: Path) -> None:
    """One panel per domain: held-out bits per byte against tokens seen, one line per run.

    A run is evaluated on its own mix's held-out sets, so (a) has no finance curve during training;
    its finance number is in the evaluation table.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    domains = sorted({m["domain"] for points in curves.values() for m in points})
    fig, axes = plt.subplots(1, len(domains), figsize=(5.2 * len(domains), 4.0), dpi=110, squeeze=False)
    for ax, domain in zip(axes[0], domains, strict=True):
        for name, points in curves.items():
            mine = [m for m in points if m["domain"] == domain and m.get("bits_per_byte") is not None]
            if mine:
                ax.plot([m["tokens"] for m in mine], [m["bits_per_byte"] for m in mine], "o-",
                        color=COLORS[name], label=STORY[name][0])  # fmt: skip
        ax.set_title(f"held-out {domain}")
        ax.set_xlabel("training tokens seen")
        ax.set_ylabel("bits per byte")
        ax.grid(alpha=0.3)
        ax.legend(frameon=False)
    fig.tight_layout()
    fig.savefig(out, format="png", metadata={"Software": None})
    plt.close(fig)
