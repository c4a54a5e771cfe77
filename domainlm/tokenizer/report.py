"""Coverage report dict -> OUT/report.json, report.md, report.html and the PNG charts they show."""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable
from pathlib import Path

from domainlm.outputs import atomic_output_dir, to_json
from domainlm.tokenizer.plots import plot_overview, plot_terms

MAX_TERM_ROWS = 100  # long term lists (3,000 abbreviations) show their most fragmented rows
_COLUMNS = [  # (key, header, format, lower_is_better)
    ("fertility", "fertility", "{:.3f}", True),
    ("bytes_per_token", "bytes/token", "{:.2f}", False),
    ("chars_per_token", "chars/token", "{:.2f}", False),
    ("split_word_share", "words split", "{:.1%}", True),
    ("unk_rate", "unknown", "{:.2%}", True),
    ("byte_fallback_rate", "byte fallback", "{:.2%}", True),
    ("vocab_used_share", "vocab used", "{:.1%}", None),
    ("tokens_vs_baseline", "tokens vs baseline", "{:.3f}", True),
]


def _display(piece: str) -> str:
    """Make whitespace inside a piece visible: ' jud' -> '␣jud'."""
    return piece.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥")


def headlines(report: dict) -> list[str]:
    """One sentence per corpus: the tokenizer that needs the fewest tokens, against the baseline."""
    baseline = report["settings"]["baseline"]
    lines = []
    for corpus in [c["name"] for c in report["corpora"]]:
        rows = [m for m in report["metrics"] if m["corpus"] == corpus]
        best = min(rows, key=lambda m: (m["tokens"], m["tokenizer"]))
        base = next(m for m in rows if m["tokenizer"] == baseline)
        if best["tokenizer"] == baseline:
            lines.append(
                f"{corpus}: {baseline} (baseline) needs the fewest tokens, fertility {base['fertility']:.3f}."
            )
            continue
        saved = 1 - best["tokens_vs_baseline"]
        lines.append(
            f"{corpus}: {best['tokenizer']} has fertility {best['fertility']:.3f} vs {base['fertility']:.3f} for "
            f"{baseline}: {saved:.1%} fewer tokens, so {saved:.1%} fewer training FLOPs per document and "
            f"{best['context_gain']:.2f}x more text per context window."
        )
    return lines


def build_images(report: dict) -> dict[str, bytes]:
    """File name -> PNG bytes for every chart of the report."""
    images = {"overview.png": plot_overview(report)}
    for terms in report["terms"]:
        images[f"terms_{_slug(terms['name'])}.png"] = plot_terms(terms, report["settings"]["baseline"])
    return images


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


def _term_rows(terms: dict, baseline: str) -> list[dict]:
    rows = terms["terms"]
    if len(rows) > MAX_TERM_ROWS:
        rows = sorted(rows, key=lambda r: (-len(r["pieces"][baseline]), r["term"]))[:MAX_TERM_ROWS]
    return rows


# ---------------------------------------------------------------- Markdown


def _md_piece(piece: str) -> str:
    text = _display(piece).replace("|", "\\|").replace("`", "ˋ")  # keep table cells and code spans intact
    return f"`{text}`"


def _md_pieces(pieces: list[str]) -> str:
    return " ".join(_md_piece(p) for p in pieces) or "-"


def _md_table(header: list[str], rows: list[list[str]], numeric: range) -> list[str]:
    """A Markdown table; columns in `numeric` are right-aligned."""
    align = ["---:" if i in numeric else "---" for i in range(len(header))]
    return ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"] + [
        "| " + " | ".join(r) + " |" for r in rows
    ]


def render_markdown(report: dict) -> str:
    settings = report["settings"]
    tokenizers = [t["name"] for t in report["tokenizers"]]
    out = ["# Vocabulary coverage report", ""]
    out += [f"Baseline **{settings['baseline']}**; up to {settings['sample_docs'] or 'all'} documents per corpus "
            f"(seed {settings['seed']}).", ""]  # fmt: skip
    out += [f"- {line}" for line in headlines(report)] + ["", "## Coverage per tokenizer and corpus", ""]
    rows = [
        [m["corpus"], m["tokenizer"], *(fmt.format(m[k]) for k, _, fmt, _ in _COLUMNS)]
        for m in report["metrics"]
    ]
    out += _md_table(["corpus", "tokenizer", *(h for _, h, _, _ in _COLUMNS)], rows, range(2, 99))
    out += ["", "![coverage overview](overview.png)", "", "## Most fragmented frequent words", ""]
    for corpus, frag in report["fragmented_words"].items():
        out += [f"### {corpus} (ranked by extra tokens under {frag['ranked_by']})", ""]
        rows = [
            [w["word"], f"{w['count']:,}", *(_md_pieces(w["pieces"][t]) for t in tokenizers)]
            for w in frag["words"]
        ]
        out += _md_table(["word", "count", *tokenizers], rows, range(1, 2)) + [""]
    for terms in report["terms"]:
        out += [f"## Terms: {terms['name']} ({terms['num_terms']:,} terms)", ""]
        rows = [[t, f"{s['mean_pieces']:.2f}", f"{s['pieces_per_word']:.2f}", f"{s['fragmented_share']:.0%}"]
                for t, s in terms["summary"].items()]  # fmt: skip
        out += _md_table(
            ["tokenizer", "pieces per term", "pieces per word", "terms split"], rows, range(1, 4)
        ) + [""]
        out += [f"![term fragmentation](terms_{_slug(terms['name'])}.png)", ""]
        rows = [[r["term"], *(_md_pieces(r["pieces"][t]) for t in tokenizers)]
                for r in _term_rows(terms, settings["baseline"])]  # fmt: skip
        out += _md_table(["term", *tokenizers], rows, range(0)) + [""]
    out += ["## Definitions", ""] + [f"- **{k}**: {v}" for k, v in report["definitions"].items()]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- HTML

REPORT_CSS = """
:root{--ink:#1f2328;--muted:#59636e;--line:#e3e6ea;--soft:#f6f8fa;--accent:#0072B2;--good:#1a7f37}
*{box-sizing:border-box}body{margin:0;font:15px/1.55 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,
Helvetica,Arial,sans-serif;color:var(--ink);background:#fff}main{max-width:1180px;margin:0 auto;padding:32px 28px 64px}
h1{font-size:28px;margin:0 0 4px}h2{font-size:20px;margin:40px 0 12px;padding-bottom:6px;border-bottom:1px solid
var(--line)}h3{font-size:16px;margin:24px 0 8px}.muted{color:var(--muted)}.cards{display:grid;grid-template-columns:
repeat(auto-fill,minmax(260px,1fr));gap:12px;margin:20px 0}.card{border:1px solid var(--line);border-radius:10px;
padding:14px 16px;background:var(--soft)}.card b{display:block;font-size:13px;text-transform:uppercase;letter-spacing:
.04em;color:var(--muted)}.card .big{font-size:26px;font-weight:600;color:var(--accent)}table{border-collapse:collapse;
width:100%;margin:8px 0 16px;font-size:13.5px}th,td{padding:6px 10px;border-bottom:1px solid var(--line);text-align:
left;vertical-align:top}th{background:var(--soft);font-weight:600;position:sticky;top:0}td.num{text-align:right;
font-variant-numeric:tabular-nums}tr:hover td{background:#fafbfc}td.best{color:var(--good);font-weight:600}
.piece{display:inline-block;font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#eef4fb;
border:1px solid #cfe0f1;border-radius:4px;padding:0 4px;margin:1px 2px 1px 0;white-space:pre}
img{max-width:100%;height:auto;border:1px solid var(--line);border-radius:8px;margin:8px 0}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px}dt{font-weight:600}dd{margin:0;color:var(--muted)}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _html_pieces(pieces: list[str]) -> str:
    return "".join(f'<span class="piece">{_e(_display(p))}</span>' for p in pieces) or "-"


def html_table(header: list[str], rows: list[list[str]], numeric_from: int) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = [c if c.startswith("<td") else f"<td{' class=num' if i >= numeric_from else ''}>{c}</td>"
                 for i, c in enumerate(row)]  # fmt: skip
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _metric_rows(report: dict) -> list[list[str]]:
    """Rows of the metrics table, the best value of each column within a corpus highlighted."""
    rows = []
    for m in report["metrics"]:
        peers = [p for p in report["metrics"] if p["corpus"] == m["corpus"]]
        cells = [_e(m["corpus"]), _e(m["tokenizer"])]
        for key, _, fmt, lower in _COLUMNS:
            values = [p[key] for p in peers]
            best = lower is not None and len(peers) > 1 and m[key] == (min(values) if lower else max(values))
            cells.append(f'<td class="num{" best" if best else ""}">{_e(fmt.format(m[key]))}</td>')
        rows.append(cells)
    return rows


def render_html(report: dict, images: dict[str, bytes]) -> str:
    settings = report["settings"]
    tokenizers = [t["name"] for t in report["tokenizers"]]

    def img(name: str, alt: str) -> str:
        return f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(images[name]).decode()}">'

    cards = "".join(f'<div class="card"><b>{_e(line.split(":")[0])}</b>{_e(line.split(":", 1)[1])}</div>'
                    for line in headlines(report))  # fmt: skip
    parts = [
        "<h1>Vocabulary coverage report</h1>",
        f'<p class="muted">{len(tokenizers)} tokenizers x {len(report["corpora"])} corpora; baseline '
        f"<b>{_e(settings['baseline'])}</b>; up to {_e(settings['sample_docs'] or 'all')} documents per corpus, "
        f"seed {_e(settings['seed'])}. Green: best value per corpus.</p>",
        f'<div class="cards">{cards}</div>',
        "<h2>Coverage per tokenizer and corpus</h2>",
        html_table(["corpus", "tokenizer", *(h for _, h, _, _ in _COLUMNS)], _metric_rows(report), 2),
        img("overview.png", "coverage metrics per tokenizer and corpus"),
        "<h2>Most fragmented frequent words</h2>",
    ]
    for corpus, frag in report["fragmented_words"].items():
        parts.append(
            f"<h3>{_e(corpus)} <span class=muted>ranked by extra tokens under {_e(frag['ranked_by'])}</span></h3>"
        )
        rows = [[_e(w["word"]), f"{w['count']:,}", *(f"<td>{_html_pieces(w['pieces'][t])}</td>" for t in tokenizers)]
                for w in frag["words"]]  # fmt: skip
        parts.append(html_table(["word", "count", *tokenizers], rows, 1))
    for terms in report["terms"]:
        parts.append(
            f"<h2>Terms: {_e(terms['name'])} <span class=muted>({terms['num_terms']:,} terms)</span></h2>"
        )
        rows = [[_e(t), f"{s['mean_pieces']:.2f}", f"{s['pieces_per_word']:.2f}", f"{s['fragmented_share']:.0%}"]
                for t, s in terms["summary"].items()]  # fmt: skip
        parts.append(html_table(["tokenizer", "pieces per term", "pieces per word", "terms split"], rows, 1))
        parts.append(img(f"terms_{_slug(terms['name'])}.png", f"pieces per term, {terms['name']}"))
        rows = [[_e(r["term"]), *(f"<td>{_html_pieces(r['pieces'][t])}</td>" for t in tokenizers)]
                for r in _term_rows(terms, settings["baseline"])]  # fmt: skip
        parts.append(html_table(["term", *tokenizers], rows, 99))
    parts.append("<h2>Definitions</h2><dl>")
    parts += [f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in report["definitions"].items()]
    parts.append("</dl>")
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
        'content="width=device-width,initial-scale=1"><title>Vocabulary coverage report</title>'
        f"<style>{REPORT_CSS}</style></head><body><main>{''.join(parts)}</main></body></html>\n"
    )


def write_report(
    report: dict, out: Path, overwrite: bool = False, inputs: Iterable[Path | str] = ()
) -> list[Path]:
    """Write report.json, report.md, report.html (charts embedded) and the charts as PNG files."""
    # The tokenizers, corpora and term lists it measured: --out must never be (or hold) one of them.
    parts = ("tokenizers", "corpora", "terms")
    inputs = [
        *inputs,
        *(entry["path"] for part in parts for entry in report.get(part, []) if "path" in entry),
    ]
    images = build_images(report)
    with atomic_output_dir(Path(out), overwrite=overwrite, command="vocab report", inputs=inputs) as tmp:
        (tmp / "report.json").write_text(to_json(report), encoding="utf-8")
        (tmp / "report.md").write_text(render_markdown(report), encoding="utf-8")
        (tmp / "report.html").write_text(render_html(report, images), encoding="utf-8")
        for name, data in images.items():
            (tmp / name).write_bytes(data)
    return [Path(out) / name for name in ("report.json", "report.md", "report.html", *images)]
