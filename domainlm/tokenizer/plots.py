"""Report dict -> PNG charts (bytes): coverage metrics per tokenizer x corpus, term fragmentation."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

# Okabe-Ito: distinguishable with colour-vision deficiencies and in grey print.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
MAX_TERMS_PLOTTED = 40

_PANELS = [
    ("fertility", "Fertility (tokens per word, lower is better)", "{:.2f}"),
    ("bytes_per_token", "Bytes per token (higher is better)", "{:.2f}"),
    ("split_word_share", "Words split into 2+ tokens (%)", "{:.0f}"),
    ("tokens_vs_baseline", "Tokens relative to baseline (lower = fewer FLOPs)", "{:.2f}"),
]


def _png(fig: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    # Fixed metadata keeps the bytes identical between runs (no creation time or version).
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def _style(ax: plt.Axes) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", color="#e5e5e5", linewidth=0.8)
    ax.set_axisbelow(True)


def plot_overview(report: dict) -> bytes:
    """Four grouped bar charts: x = corpus, one bar per tokenizer."""
    tokenizers = [t["name"] for t in report["tokenizers"]]
    corpora = [c["name"] for c in report["corpora"]]
    table = {(m["tokenizer"], m["corpus"]): m for m in report["metrics"]}
    fig, axes = plt.subplots(2, 2, figsize=(12, 7.5))
    width = 0.8 / len(tokenizers)
    x = np.arange(len(corpora))
    for ax, (key, title, fmt) in zip(axes.flat, _PANELS, strict=True):
        scale = 100.0 if key == "split_word_share" else 1.0
        for i, name in enumerate(tokenizers):
            values = [table[(name, c)][key] * scale for c in corpora]
            # A lossy tokenizer's bars are hatched and labelled: its fewer tokens drop text.
            lossy = any(not table[(name, c)].get("lossless", True) for c in corpora)
            bars = ax.bar(x + (i - (len(tokenizers) - 1) / 2) * width, values, width * 0.92,
                          label=f"{name} (lossy round trip)" if lossy else name, color=PALETTE[i % len(PALETTE)],
                          hatch="//" if lossy else None, edgecolor="white" if lossy else None)  # fmt: skip
            if len(tokenizers) * len(corpora) <= 24:
                ax.bar_label(bars, labels=[fmt.format(v) for v in values], fontsize=7, padding=1.5)
        if key == "tokens_vs_baseline":
            ax.axhline(1.0, color="#555555", linewidth=0.9, linestyle="--")
        ax.set_title(title, fontsize=10.5, loc="left")
        ax.set_xticks(x, corpora)
        ax.margins(y=0.15)
        _style(ax)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=min(len(tokenizers), 6), frameon=False, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return _png(fig)


def plot_terms(terms: dict, baseline: str) -> bytes:
    """Heatmap of pieces per term (rows) under each tokenizer (columns); the worst terms first."""
    tokenizers = list(terms["summary"])
    rows = sorted(terms["terms"], key=lambda r: -len(r["pieces"][baseline]))[:MAX_TERMS_PLOTTED]
    if len(terms["terms"]) <= MAX_TERMS_PLOTTED:
        rows = terms["terms"]  # short lists keep their own order
    counts = np.array([[len(r["pieces"][t]) for t in tokenizers] for r in rows])
    longest = max(len(r["term"]) for r in rows)
    fig, ax = plt.subplots(figsize=(1.5 + 0.07 * longest + 1.6 * len(tokenizers), 1.4 + 0.27 * len(rows)))
    image = ax.imshow(counts, cmap="YlOrRd", vmin=1, vmax=max(int(counts.max()), 2), aspect="auto")
    for (i, j), value in np.ndenumerate(counts):
        dark = value > 0.6 * counts.max()
        ax.text(j, i, str(value), ha="center", va="center", fontsize=8, color="white" if dark else "#222222")
    # Names wrap at '-' so long ones (bert-base-uncased) never collide with their neighbours.
    ax.set_xticks(
        range(len(tokenizers)), [t.replace("-", "-\n") if len(t) > 12 else t for t in tokenizers], fontsize=9
    )
    ax.set_yticks(range(len(rows)), [r["term"] for r in rows], fontsize=8)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    shown = f"{len(rows)} of {terms['num_terms']:,} terms, most fragmented under {baseline}"
    subtitle = shown if len(rows) < terms["num_terms"] else f"{terms['num_terms']} terms"
    ax.set_title(f"Pieces per term: {terms['name']} ({subtitle})", fontsize=10, loc="left", pad=34)
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02, label="pieces")
    fig.tight_layout()
    return _png(fig)
