"""Demo artifacts (coverage report, mix manifests, plan, metrics.jsonl, eval report) -> training.png + report.html.

The page links every stage's own report by relative path, so the demo folder can be moved or zipped.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from domainlm.demo.adaptation import STORY, ModelRow, headlines, heldout_curves, plot_heldout, tokens_label
from domainlm.demo.steps import GENERAL, Step
from domainlm.mix.manifest import MixManifest, open_mix
from domainlm.outputs import atomic_write_text
from domainlm.tokenizer.report import REPORT_CSS, html_table
from domainlm.tokenizer.report import headlines as coverage_headlines


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _coverage_section(coverage: dict) -> str:
    rows = [[_e(m["corpus"]), _e(m["tokenizer"]), f"{m['fertility']:.3f}", f"{m['bytes_per_token']:.2f}",
             f"{m['split_word_share']:.1%}", f"{m['tokens_vs_baseline']:.3f}"] for m in coverage["metrics"]]  # fmt: skip
    cards = "".join(f'<div class="card">{_e(line)}</div>' for line in coverage_headlines(coverage))
    return (
        '<h2>1. Tokenizer coverage <a href="coverage/report.html">full report</a></h2>'
        f'<div class="cards">{cards}</div>'
        + html_table(
            ["corpus", "tokenizer", "fertility", "bytes/token", "words split", "tokens vs gpt2"], rows, 2
        )
    )


def _mix_section(manifests: dict[str, MixManifest]) -> str:
    rows = [[_e(mix), _e(s.name), f"{s.documents:,}", f"{s.available_tokens:,}", f"{s.target_ratio:.4f}",
             f"{s.tokens_taken:,}", f"{s.repeats:.2f}", f"{s.realized_ratio:.4f}", f"{s.val.documents:,}"]
            for mix, manifest in manifests.items() for s in manifest.sources]  # fmt: skip
    sizes = "; ".join(
        f"{mix}: {m.train.num_sequences:,} sequences of {m.seq_len} tokens ({m.train.num_tokens:,} tokens)"
        for mix, m in manifests.items()
    )
    return (
        '<h2>2. Mixes <a href="mix/manifest.json">51/49</a> <a href="mix_general/manifest.json">general</a></h2>'
        f'<p class="muted">{_e(sizes)}. Both hold out the same general documents (same source, '
        "fraction and seed), so every model is scored on text none of them trained on.</p>"
        + html_table(
            [
                "mix",
                "source",
                "documents",
                "available",
                "target",
                "taken",
                "repeats",
                "realized",
                "held-out docs",
            ],
            rows,
            2,
        )  # fmt: skip
    )


def _plan_section(plan_text: str, plan: dict) -> str:
    rec, compute = plan["recommendation"], plan["compute"]
    summary = (
        f"{plan['sizing']['params']:,} parameters on {plan['sizing']['tokens']:,.0f} tokens: "
        f"{compute['gpu_hours']:,.0f} GPU-hours on {compute['num_gpus']} x {compute['gpu_type']} at "
        f"{compute['mfu']:.0%} MFU; {rec['strategy']} with micro-batch {rec['micro_batch']}, "
        f"{rec['memory_per_gpu'] / 2**30:.1f} GiB per GPU."
    )
    return (
        '<h2>3. Plan for the full-size recipe <a href="plan/plan.json">plan.json</a></h2>'
        f"<p>{_e(summary)}</p><details><summary>full plan</summary><pre>{_e(plan_text)}</pre></details>"
    )


def _training_section(curves: dict[str, list[dict]]) -> str:
    runs = ", ".join(f'<a href="{name}/metrics.jsonl">{_e(STORY[name][0])}</a>' for name in curves)
    return (
        f"<h2>4. Pretraining: {runs}</h2>"
        '<p class="muted">Held-out bits per byte during training, against the tokens each model has seen: '
        "(c) starts where (a) ended. A run is evaluated on its own mix's held-out sets, so (a) has no "
        "finance curve here; the table below scores every model on both.</p>"
        '<img alt="held-out bits per byte during training" src="training.png">'
    )


def _eval_section(rows: list[ModelRow], evaluation: dict) -> str:
    domains = list(rows[0].bits_per_byte)
    general = next(r for r in rows if r.name == GENERAL)
    cells = []
    for row in rows:
        change = [f"{row.bits_per_byte[d] / general.bits_per_byte[d] - 1:+.1%}" for d in domains]
        cells.append([_e(row.label), _e(row.trained_on), tokens_label(row, rows)]
                     + [f"{row.bits_per_byte[d]:.3f}" for d in domains]
                     + (["&mdash;"] * len(domains) if row is general else change))  # fmt: skip
    cards = "".join(f'<div class="card">{_e(line)}</div>' for line in headlines(rows))
    return (
        '<h2>5. Domain adaptation: bits per byte on held-out text <a href="eval/report.md">report</a></h2>'
        f'<div class="cards">{cards}</div>'
        + html_table(
            [
                "model",
                "trained on",
                "training tokens",
                *(f"{d} bits/byte" for d in domains),
                *(f"{d} vs (a)" for d in domains),
            ],
            cells,
            2,
        )  # fmt: skip
        + f'<p class="muted">{_e(evaluation.get("note", ""))}</p>'
        + '<img alt="bits per byte per model and domain" src="eval/bits_per_byte.png">'
    )


def _steps_section(steps: list[Step]) -> str:
    rows = [[_e(s.title), f"<td><code>{_e(s.shell())}</code></td>", f"{s.seconds:.1f}", f"{s.cpu_seconds:.1f}"]
            for s in steps]  # fmt: skip
    total = (
        f"{sum(s.seconds for s in steps):.0f} s wall, {sum(s.cpu_seconds for s in steps):.0f} CPU-s in all"
    )
    return (
        f'<h2>Commands</h2><p class="muted">{total} (CPU-s: every process of the step, the ranks included).</p>'
        + html_table(["step", "command", "seconds", "CPU seconds"], rows, 2)
    )


def write_report(out_dir: Path, steps: list[Step], sample_text: str, rows: list[ModelRow]) -> Path:
    """Build training.png and report.html in `out_dir` from the artifacts the steps wrote there."""
    curves = heldout_curves(out_dir)
    plot_heldout(curves, out_dir / "training.png")
    sections = [
        "<h1>domainlm demo: does a finance mix make a finance model?</h1>",
        '<p class="muted">Shipped samples only; every step below is a plain <code>domainlm</code> command. '
        "Three models of one recipe and seed, on equal training tokens per run: (a) general text only, "
        "(b) 51% finance / 49% general from scratch (BloombergGPT's mix), (c) (a) continued on that "
        "mix with (b)'s recipe and tokens (so it has seen twice as many tokens in all).</p>",
        _coverage_section(_read_json(out_dir / "coverage" / "report.json")),
        _mix_section({"51/49": open_mix(out_dir / "mix"), "general only": open_mix(out_dir / "mix_general")}),
        _plan_section(
            (out_dir / "plan" / "plan.txt").read_text(encoding="utf-8"),
            _read_json(out_dir / "plan" / "plan.json"),
        ),
        _training_section(curves),
        _eval_section(rows, _read_json(out_dir / "eval" / "report.json")),
        f"<h2>Sample from (b)</h2><pre>{_e(sample_text)}</pre>",
        _steps_section(steps),
    ]
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>domainlm demo</title>'
        f"<style>{REPORT_CSS}pre{{white-space:pre-wrap;font-size:12.5px}}</style></head>"
        f"<body><main>{''.join(sections)}</main></body></html>\n"
    )
    path = out_dir / "report.html"
    atomic_write_text(path, page)
    return path
