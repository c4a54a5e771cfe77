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
    ("digit_token_share", "digit tokens", "{:.1%}", None),
    ("lossy_doc_share", "docs changed by round trip", "{:.1%}", True),
    ("lost_char_share", "chars changed by round trip", "{:.2%}", True),
]
# Columns where fewer tokens look better: a lossy tokenizer is never marked best on them.
_TOKEN_COUNT_KEYS = {
    "fertility",
    "bytes_per_token",
    "chars_per_token",
    "split_word_share",
    "tokens_vs_baseline",
}


def _display(piece: str) -> str:
    """Make whitespace inside a piece visible: ' jud' -> '␣jud'."""
    return piece.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥")


def lossy_note(m: dict) -> str:
    """'lossy: decode(encode(text)) changes 100% of documents and 12.7% of characters (11.9% case, ...)'."""
    kinds = ", ".join(f"{v:.1%} {k}" for k, v in m["lost_chars_by_kind"].items() if v >= 0.0005)
    return (
        f"lossy: decode(encode(text)) changes {_share(m['lossy_doc_share'])} of documents and "
        f"{m['lost_char_share']:.1%} of characters" + (f" ({kinds})" if kinds else "")
    )


def _share(value: float) -> str:
    """50% / 0.4%: a small share never rounds to a misleading 0%."""
    return f"{value:.0%}" if value >= 0.1 else f"{value:.1%}"


def headlines(report: dict) -> list[str]:
    """One sentence per corpus: who needs the fewest tokens against the baseline, and whether it is lossy.

    A lossy tokenizer (decode(encode(text)) != text) needs fewer tokens because it drops text, so it
    is never named best without saying so in the same sentence, with the lossless best beside it."""
    baseline = report["settings"]["baseline"]
    lines = []
    for corpus in [c["name"] for c in report["corpora"]]:
        rows = [m for m in report["metrics"] if m["corpus"] == corpus]
        base = next(m for m in rows if m["tokenizer"] == baseline)
        best = min(rows, key=lambda m: (m["tokens"], m["tokenizer"]))
        lossless = [m for m in rows if m.get("lossless", True)]
        honest = min(lossless, key=lambda m: (m["tokens"], m["tokenizer"])) if lossless else None
        base_name = baseline if base.get("lossless", True) else f"{baseline} ({lossy_note(base)})"
        if not best.get("lossless", True):
            line = f"{corpus}: {best['tokenizer']} needs {_fewer(best)} than {base_name}, but it is {lossy_note(best)}"
            if honest is None:
                line += "; no tokenizer here is lossless."
            elif honest["tokenizer"] == baseline:
                line += f"; among lossless tokenizers, {baseline} (baseline) needs the fewest tokens."
            else:
                line += f"; among lossless tokenizers, {honest['tokenizer']} is best: {_fewer(honest)}."
            lines.append(line)
        elif best["tokenizer"] == baseline:
            lines.append(
                f"{corpus}: {baseline} (baseline) needs the fewest tokens, fertility {base['fertility']:.3f}."
            )
        else:
            saved = 1 - best["tokens_vs_baseline"]
            lines.append(
                f"{corpus}: {best['tokenizer']} (lossless) has fertility {best['fertility']:.3f} vs "
                f"{base['fertility']:.3f} for {base_name}: {saved:.1%} fewer tokens, so {saved:.1%} fewer "
                f"training FLOPs per document and {best['context_gain']:.2f}x more text per context window."
            )
    return lines


def _fewer(m: dict) -> str:
    change = 1 - m["tokens_vs_baseline"]
    return f"{change:.1%} fewer tokens" if change >= 0 else f"{-change:.1%} more tokens"


def digit_policy_rows(report: dict, corpus: str) -> list[list[str]]:
    """Per tokenizer: digit tokens as trained, and its total tokens if digit runs were split singly / in 3s."""
    cost = report["digit_policy"][corpus]
    rows = []
    for name, t in cost["per_tokenizer"].items():
        rows.append([
            name, f"{t['as_trained']:,}", f"{t['digit_token_share']:.1%}", f"{t['tokens']:,}",
            f"{t['tokens_if_single']:,} ({t['tokens_if_single'] / max(t['tokens'], 1) - 1:+.1%})",
            f"{t['tokens_if_group3']:,} ({t['tokens_if_group3'] / max(t['tokens'], 1) - 1:+.1%})",
        ])  # fmt: skip
    return rows


DIGIT_HEADER = ["tokenizer", "digit tokens (as trained)", "share of tokens", "tokens",
                "tokens if single digits", "tokens if groups of 3"]  # fmt: skip


def digit_summary(report: dict, corpus: str) -> str:
    cost = report["digit_policy"][corpus]
    return (
        f"{cost['digit_runs']:,} digit runs, {cost['digit_chars']:,} digits: single-digit tokens cost "
        f"{cost['single']:,} tokens, groups of up to 3 (cl100k) {cost['group3']:,}; each tokenizer as "
        "trained below. Single digits help arithmetic; fewer tokens per number shorten the text "
        "(`tokenizer train --digits single|group3|whole`)."
    )


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
        for name, words in frag.get("more_tokens_than_baseline", {}).items():
            out += [f"#### {corpus}: where {name} needs more tokens than {frag['ranked_by']}", ""]
            rows = [[w["word"], f"{w['count']:,}", f"+{w['extra_tokens']:,}", _md_pieces(w["pieces"]),
                     _md_pieces(w["baseline_pieces"])] for w in words]  # fmt: skip
            header = ["word", "count", "extra tokens", name, frag["ranked_by"]]
            out += (_md_table(header, rows, range(1, 3)) if rows else ["(none)"]) + [""]
    if report.get("digit_policy"):
        out += ["## Digit policy: what numbers cost", ""]
        for corpus in report["digit_policy"]:
            out += [f"### {corpus}", "", digit_summary(report, corpus), ""]
            out += _md_table(DIGIT_HEADER, digit_policy_rows(report, corpus), range(1, 6)) + [""]
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
        name = m["tokenizer"] + ("" if m.get("lossless", True) else " (lossy)")
        cells = [_e(m["corpus"]), _e(name)]
        lossless = [p for p in peers if p.get("lossless", True)]
        for key, _, fmt, lower in _COLUMNS:
            ranked = lossless if key in _TOKEN_COUNT_KEYS else peers  # a lossy one is never best on counts
            values = [p[key] for p in ranked]
            best = (
                lower is not None and len(peers) > 1 and m in ranked
                and m[key] == (min(values) if lower else max(values))
            )  # fmt: skip
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
        f"seed {_e(settings['seed'])}. Green: best value per corpus; on token counts only lossless tokenizers "
        "(decode(encode(text)) == text) are ranked.</p>",
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
        for name, words in frag.get("more_tokens_than_baseline", {}).items():
            parts.append(
                f"<h3>{_e(corpus)}: where {_e(name)} needs more tokens than {_e(frag['ranked_by'])}</h3>"
            )
            rows = [[_e(w["word"]), f"{w['count']:,}", f"+{w['extra_tokens']:,}", f"<td>{_html_pieces(w['pieces'])}</td>",
                     f"<td>{_html_pieces(w['baseline_pieces'])}</td>"] for w in words]  # fmt: skip
            parts.append(html_table(["word", "count", "extra tokens", name, frag["ranked_by"]], rows, 1))
    if report.get("digit_policy"):
        parts.append("<h2>Digit policy: what numbers cost</h2>")
        for corpus in report["digit_policy"]:
            parts.append(f"<h3>{_e(corpus)}</h3><p>{_e(digit_summary(report, corpus))}</p>")
            parts.append(html_table(DIGIT_HEADER, digit_policy_rows(report, corpus), 1))
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
