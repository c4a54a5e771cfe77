"""Demo artifacts (coverage report, mix manifest, plan, metrics.jsonl, eval report) -> loss.png + report.html.

The page links every stage's own report by relative path, so the demo folder can be moved or zipped.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from domainlm.demo.steps import Step
from domainlm.mix.manifest import MixManifest, open_mix
from domainlm.outputs import atomic_write_text
from domainlm.pretrain.metrics import read_metrics
from domainlm.tokenizer.report import REPORT_CSS, headlines, html_table


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def plot_losses(metrics: list[dict], out: Path) -> None:
    """Training loss per logged step, and held-out loss per domain at each evaluation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [m for m in metrics if m.get("kind") == "train"]
    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=110)
    ax.plot([m["step"] for m in train], [m["loss"] for m in train], label="train", color="#0072B2", lw=2)
    domains = sorted({m["domain"] for m in metrics if m.get("kind") == "eval"})
    for color, domain in zip(["#D55E00", "#009E73", "#CC79A7", "#E69F00"], domains, strict=False):
        points = [m for m in metrics if m.get("kind") == "eval" and m["domain"] == domain]
        ax.plot(
            [m["step"] for m in points],
            [m["loss"] for m in points],
            "o--",
            color=color,
            label=f"held-out {domain}",
        )
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (nats / token)")
    ax.set_title("Pretraining loss")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)
    fig.tight_layout()
    fig.savefig(out, format="png", metadata={"Software": None})
    plt.close(fig)


def _coverage_section(coverage: dict) -> str:
    rows = [[_e(m["corpus"]), _e(m["tokenizer"]), f"{m['fertility']:.3f}", f"{m['bytes_per_token']:.2f}",
             f"{m['split_word_share']:.1%}", f"{m['tokens_vs_baseline']:.3f}"] for m in coverage["metrics"]]  # fmt: skip
    cards = "".join(f'<div class="card">{_e(line)}</div>' for line in headlines(coverage))
    return (
        '<h2>1. Tokenizer coverage <a href="coverage/report.html">full report</a></h2>'
        f'<div class="cards">{cards}</div>'
        + html_table(
            ["corpus", "tokenizer", "fertility", "bytes/token", "words split", "tokens vs gpt2"], rows, 2
        )
    )


def _mix_section(manifest: MixManifest) -> str:
    rows = [[_e(s.name), f"{s.documents:,}", f"{s.available_tokens:,}", f"{s.target_ratio:.4f}",
             f"{s.tokens_taken:,}", f"{s.repeats:.2f}", f"{s.realized_ratio:.4f}",
             f"{s.val.documents:,}"] for s in manifest.sources]  # fmt: skip
    train = manifest.train
    return (
        '<h2>2. Mix <a href="mix/manifest.json">manifest</a></h2>'
        f'<p class="muted">{train.num_sequences:,} sequences of {manifest.seq_len} tokens '
        f"({train.num_tokens:,} tokens, {manifest.dtype}), seed {manifest.seed}.</p>"
        + html_table(
            ["source", "documents", "available", "target", "taken", "repeats", "realized", "held-out docs"],
            rows,
            1,
        )
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


def _training_section(metrics: list[dict]) -> str:
    train = [m for m in metrics if m.get("kind") == "train"]
    first, last = train[0], train[-1]
    return (
        '<h2>4. Pretraining <a href="run/metrics.jsonl">metrics.jsonl</a></h2>'
        f'<p class="muted">loss {first["loss"]:.3f} at step {first["step"]} -> {last["loss"]:.3f} at step '
        f"{last['step']}; {last['tokens_per_s_per_gpu']:,.0f} tokens/s per rank.</p>"
        '<img alt="training and held-out loss" src="loss.png">'
    )


def _eval_section(evaluation: dict) -> str:
    table = evaluation["table"]
    by_key = {(r["model"], r["domain"]): r for r in evaluation["results"]}
    rows = []
    for model in table["rows"]:
        cells = [_e(model)]
        for domain in table["columns"]:
            r = by_key[(model, domain)]
            cells.append(f"{r['bits_per_byte']:.3f} bpb / ppl {r['perplexity']:,.1f}")
        rows.append(cells)
    return (
        '<h2>5. Evaluation <a href="eval/report.md">report</a></h2>'
        f'<p class="muted">{_e(evaluation.get("note", ""))}</p>'
        + html_table(["model", *table["columns"]], rows, 1)
        + '<img alt="bits per byte per model and domain" src="eval/bits_per_byte.png">'
    )


def _steps_section(steps: list[Step]) -> str:
    rows = [[_e(s.title), f"<td><code>{_e(s.shell())}</code></td>", f"{s.seconds:.1f}"] for s in steps]
    return "<h2>Commands</h2>" + html_table(["step", "command", "seconds"], rows, 2)


def write_report(out_dir: Path, steps: list[Step], sample_text: str) -> Path:
    """Build loss.png and report.html in `out_dir` from the artifacts the steps wrote there."""
    metrics = read_metrics(out_dir / "run" / "metrics.jsonl")
    plot_losses(metrics, out_dir / "loss.png")
    sections = [
        "<h1>domainlm demo: a finance model, end to end</h1>",
        '<p class="muted">Shipped samples only; every step below is a plain <code>domainlm</code> command.</p>',
        _coverage_section(_read_json(out_dir / "coverage" / "report.json")),
        _mix_section(open_mix(out_dir / "mix")),
        _plan_section(
            (out_dir / "plan" / "plan.txt").read_text(encoding="utf-8"),
            _read_json(out_dir / "plan" / "plan.json"),
        ),
        _training_section(metrics),
        _eval_section(_read_json(out_dir / "eval" / "report.json")),
        f"<h2>Sample</h2><pre>{_e(sample_text)}</pre>",
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
