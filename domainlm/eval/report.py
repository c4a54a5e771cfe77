"""EvalReport -> report.json, report.md, bits_per_byte.png and rich tables (model x domain).

Bits per byte is the comparison metric: it divides each model's total NLL by the same UTF-8 bytes,
so models with different tokenizers are compared on equal terms. Per-token loss and perplexity
depend on how a tokenizer cuts the text and compare only models that share a tokenizer.
Nothing time- or machine-dependent beyond the device is recorded, so equal runs give equal files.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from domainlm.outputs import atomic_output_dir, atomic_write_text, to_json

REPORT_FORMAT = "domainlm.eval/v1"
PLOT_NAME = "bits_per_byte.png"
METRIC_NOTE = (
    "Bits per byte = total negative log-likelihood in bits / UTF-8 bytes of the text. Every model "
    "reads the same text and tokenizes it with its own tokenizer, so bits per byte compares models "
    "with different tokenizers; loss and perplexity are per token of each model's own tokenizer "
    "and compare only models that share one. Lower is better."
)
_OBJECTIVE_NOTES = {
    "causal": "next-token NLL of every text token, each document prefixed with BOS/EOS; "
    "sliding windows of {max_length} tokens advancing by {stride} (each token scored once, "
    "with at least {context} tokens of context)",
    "masked": "pseudo-log-likelihood: each token masked exactly once over 7 passes of ~15% "
    "seeded masking (seed {seed}); non-overlapping chunks of {max_length} tokens",
    "seq2seq": "T5 span corruption: spans of mean length 3, each token corrupted exactly once over "
    "7 passes of ~15% (seed {seed}); NLL of span tokens; non-overlapping chunks of {max_length} tokens",
}


@dataclass(frozen=True)
class ModelEntry:
    name: str
    path: str
    kind: str
    num_parameters: int
    vocab_size: int
    max_length: int
    stride: int | None
    objective: str
    encoder: str = "transformers"  # the tokenizer's own call, or tiktoken (proved to give its ids)

    @classmethod
    def describe(cls, info: Any, model: Any, max_length: int, stride: int | None, seed: int) -> ModelEntry:
        context = max_length - stride if stride is not None else None
        note = _OBJECTIVE_NOTES[info.kind].format(
            max_length=max_length, stride=stride, context=context, seed=seed
        )
        return cls(
            name=info.spec.name,
            path=str(info.spec.path),
            kind=info.kind,
            num_parameters=sum(p.numel() for p in model.parameters()),
            vocab_size=len(info.tokenizer),
            max_length=max_length,
            stride=stride,
            objective=note,
        )


@dataclass(frozen=True)
class DomainEntry:
    name: str
    source: str
    documents: int
    bytes: int


@dataclass(frozen=True)
class EvalResult:
    model: str
    domain: str
    loss: float
    perplexity: float
    bits_per_byte: float
    num_tokens: int
    num_bytes: int
    num_unscored: int = 0


@dataclass(frozen=True)
class ComparisonTable:
    """`values[i][j]` is the metric of model `rows[i]` on domain `columns[j]`."""

    metric: str
    rows: list[str]
    columns: list[str]
    values: list[list[float]]

    def best_row(self, column: int) -> int:
        return min(range(len(self.rows)), key=lambda i: self.values[i][column])


@dataclass
class EvalReport:
    models: list[ModelEntry]
    domains: list[DomainEntry]
    results: list[EvalResult]
    settings: dict[str, Any] = field(default_factory=dict)

    def result(self, model: str, domain: str) -> EvalResult:
        for result in self.results:
            if result.model == model and result.domain == domain:
                return result
        raise KeyError(f"no result for model {model!r} on domain {domain!r}")

    def table(self, metric: str = "bits_per_byte") -> ComparisonTable:
        rows, columns = [m.name for m in self.models], [d.name for d in self.domains]
        values = [[getattr(self.result(r, c), metric) for c in columns] for r in rows]
        return ComparisonTable(metric=metric, rows=rows, columns=columns, values=values)

    def as_dict(self) -> dict[str, Any]:
        table = self.table()
        return {
            "format": REPORT_FORMAT,
            "metric": "bits_per_byte",
            "note": METRIC_NOTE,
            "settings": self.settings,
            "models": [asdict(m) for m in self.models],
            "domains": [asdict(d) for d in self.domains],
            "results": [{k: _json_number(v) for k, v in asdict(r).items()} for r in self.results],
            "table": {"rows": table.rows, "columns": table.columns, "bits_per_byte": table.values},
        }


def _json_number(value: Any) -> Any:
    """JSON has no infinity: an overflowed perplexity is written as the string 'inf'."""
    return "inf" if isinstance(value, float) and math.isinf(value) else value


def _fmt(value: float, digits: int = 4) -> str:
    return "inf" if math.isinf(value) else f"{value:,.{digits}f}"


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _relative_rows(table: ComparisonTable) -> list[list[str]]:
    base = table.values[0]
    return [
        [name, *(f"{(v - b) / b * 100:+.1f}%" for v, b in zip(values, base, strict=True))]
        for name, values in zip(table.rows[1:], table.values[1:], strict=True)
    ]


def render_markdown(report: EvalReport) -> str:
    table = report.table()
    main_rows = []
    for i, name in enumerate(table.rows):
        cells = [
            f"**{_fmt(v)}**" if table.best_row(j) == i else _fmt(v) for j, v in enumerate(table.values[i])
        ]
        main_rows.append([name, *cells])
    parts = ["# domainlm eval report", "", METRIC_NOTE, "", "## Bits per byte (model x domain)", ""]
    parts += [_markdown_table(["model", *table.columns], main_rows), ""]
    if len(table.rows) > 1:
        parts += [f"## Bits per byte relative to `{table.rows[0]}` (negative is better)", ""]
        parts += [_markdown_table(["model", *table.columns], _relative_rows(table)), ""]
    detail = [
        [
            r.model,
            r.domain,
            _fmt(r.bits_per_byte),
            _fmt(r.loss),
            _fmt(r.perplexity, 2),
            f"{r.num_tokens:,}",
            f"{r.num_bytes:,}",
        ]
        for r in report.results
    ]
    parts += ["## Per model and domain", ""]
    parts += [
        _markdown_table(["model", "domain", "bits/byte", "loss", "perplexity", "tokens", "bytes"], detail),
        "",
    ]
    models = [
        [m.name, m.kind, f"{m.num_parameters:,}", f"{m.vocab_size:,}", m.objective, f"`{m.path}`"]
        for m in report.models
    ]
    parts += [
        "## Models",
        "",
        _markdown_table(["model", "kind", "parameters", "vocab", "scored as", "path"], models),
        "",
    ]
    domains = [[d.name, f"{d.documents:,}", f"{d.bytes:,}", f"`{d.source}`"] for d in report.domains]
    parts += ["## Domains", "", _markdown_table(["domain", "documents", "bytes", "source"], domains), ""]
    parts += [f"![bits per byte]({PLOT_NAME})", ""]
    return "\n".join(parts)


def plot_bits_per_byte(report: EvalReport, path: Path) -> None:
    """Grouped bars: one group per domain, one bar per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = report.table()
    num_models, num_domains = len(table.rows), len(table.columns)
    width = 0.8 / num_models
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 + num_domains * (0.5 + 0.35 * num_models)), 4.2))
    for i, name in enumerate(table.rows):
        xs = [j + (i - (num_models - 1) / 2) * width for j in range(num_domains)]
        bars = ax.bar(xs, table.values[i], width, label=name)
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
    ax.set_xticks(range(num_domains), table.columns)
    ax.set_ylabel("bits per byte (lower is better)")
    ax.set_title("Held-out bits per byte by domain")
    ax.margins(y=0.15)
    ax.legend(
        fontsize=8, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=min(num_models, 4)
    )
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)


def write_report(
    report: EvalReport, out: Path, overwrite: bool = False, inputs: Iterable[Path | str] = ()
) -> Path:
    """report.json, report.md and the plot, written into `out` as a whole (crash-safe)."""
    # The models and texts it measured: --out must never be (or hold) one of them.
    inputs = [*inputs, *(m.path for m in report.models), *(d.source for d in report.domains)]
    with atomic_output_dir(Path(out), overwrite=overwrite, command="eval", inputs=inputs) as tmp:
        atomic_write_text(tmp / "report.json", to_json(report.as_dict()))
        atomic_write_text(tmp / "report.md", render_markdown(report))
        plot_bits_per_byte(report, tmp / PLOT_NAME)
    return Path(out)


def rich_tables(report: EvalReport) -> list[Any]:
    """Terminal tables: bits per byte (best per domain in bold) and per-token loss / perplexity."""
    from rich.table import Table

    table = report.table()
    bpb = Table(title="bits per byte (lower is better; comparable across tokenizers)")
    bpb.add_column("model", style="bold")
    for column in table.columns:
        bpb.add_column(column, justify="right")
    for i, name in enumerate(table.rows):
        cells = [
            f"[bold green]{_fmt(v)}[/]" if table.best_row(j) == i and len(table.rows) > 1 else _fmt(v)
            for j, v in enumerate(table.values[i])
        ]
        bpb.add_row(name, *cells)
    detail = Table(title="per token (compare only models that share a tokenizer)")
    for column in ("model", "domain", "loss", "perplexity", "tokens", "bytes"):
        detail.add_column(column, justify="left" if column in ("model", "domain") else "right")
    for r in report.results:
        detail.add_row(
            r.model, r.domain, _fmt(r.loss), _fmt(r.perplexity, 2), f"{r.num_tokens:,}", f"{r.num_bytes:,}"
        )
    return [bpb, detail]
