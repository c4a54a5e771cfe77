"""Per-document decisions -> per-stage / per-rule / per-source counts, examples, report.json and report.md.

Every document enters the first stage and walks the stages in order until the one that removes it,
so for each stage `in = removed + kept` and a stage's `kept` is the next stage's `in`; inside the
filters stage the rules chain the same way, overall and per source. Tests check these identities.
Paragraph dedup is the one stage that also removes words from documents it keeps: its
`words_removed` counts them, so words still chain (`words_in = words_removed + words_kept`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from domainlm.corpus.curate.dedup_paragraph import ParagraphCut
from domainlm.corpus.curate.merge import Removal
from domainlm.corpus.curate.process import DocRecord

REPORT_FORMAT = "domainlm.curate/v1"
STAGES = ("normalize", "exact_dedup", "decontaminate", "filters", "near_dedup", "redact", "paragraph_dedup")
_SNIPPET_CHARS = 240
_HEADER = "| stage / rule | docs in | removed | kept | words in | removed | kept | docs kept |"
_SEPARATOR = "|---|---:|---:|---:|---:|---:|---:|---:|"


@dataclass
class Counts:
    docs_in: int = 0
    docs_removed: int = 0
    words_in: int = 0
    words_removed: int = 0

    def add(self, num_words: int, removed: bool, words_cut: int = 0) -> None:
        """One document; `words_cut`: words removed from it although it is kept."""
        self.docs_in += 1
        self.words_in += num_words
        if removed:
            self.docs_removed += 1
            self.words_removed += num_words
        else:
            self.words_removed += words_cut

    def as_dict(self) -> dict[str, int]:
        return {
            "docs_in": self.docs_in,
            "docs_removed": self.docs_removed,
            "docs_kept": self.docs_in - self.docs_removed,
            "words_in": self.words_in,
            "words_removed": self.words_removed,
            "words_kept": self.words_in - self.words_removed,
        }


@dataclass
class Example:
    """A removed document quoted in the report; `text` is filled later in shard runs."""

    ordinal: int
    doc_id: str
    source: str
    detail: str
    duplicate_of: str | None
    text: str | None = None

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.doc_id, "source": self.source, "detail": self.detail}
        if self.duplicate_of is not None:
            data["duplicate_of"] = self.duplicate_of
        data["text"] = snippet(self.text or "")
        return data


def snippet(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _SNIPPET_CHARS else text[: _SNIPPET_CHARS - 1] + "…"


@dataclass
class Chain:
    """Counts per stage and per filter rule for one set of documents (all, or one source)."""

    stages: list[str]
    rules: list[str]
    stage_counts: dict[str, Counts] = field(default_factory=dict)
    rule_counts: dict[str, Counts] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.stage_counts = {name: Counts() for name in self.stages}
        self.rule_counts = {name: Counts() for name in self.rules}

    def add(self, words: int, removal: Removal | None, cut: ParagraphCut | None) -> None:
        for stage in self.stages:
            removed_here = removal is not None and removal.stage == stage
            words_cut = cut.words if cut is not None and stage == "paragraph_dedup" else 0
            self.stage_counts[stage].add(words, removed_here, words_cut)
            if stage == "filters":
                self._add_rules(words, removal.rule if removed_here else None)
            if removed_here:
                break

    def _add_rules(self, words: int, failed_rule: str | None) -> None:
        for rule in self.rules:
            self.rule_counts[rule].add(words, rule == failed_rule)
            if rule == failed_rule:
                return


@dataclass
class ParagraphCounts:
    """Paragraph dedup's own counts, over the documents that reach the stage."""

    paragraphs_in: int = 0
    paragraphs_removed: int = 0
    bytes_in: int = 0
    bytes_removed: int = 0
    words_removed: int = 0
    documents_changed: int = 0

    def add(self, record: DocRecord, removal: Removal | None, cut: ParagraphCut | None) -> None:
        keys = record.paragraphs or []
        self.paragraphs_in += len(keys)
        self.bytes_in += sum(key.num_bytes for key in keys)
        if removal is not None:  # every paragraph repeated: the document went
            self.paragraphs_removed += len(keys)
            self.bytes_removed += sum(key.num_bytes for key in keys)
            self.words_removed += sum(key.words for key in keys)
        elif cut is not None:
            self.paragraphs_removed += len(cut.drop)
            self.bytes_removed += cut.num_bytes
            self.words_removed += cut.words
            self.documents_changed += 1

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = dict(vars(self))
        data["removed_fraction_bytes"] = (
            round(self.bytes_removed / self.bytes_in, 6) if self.bytes_in else 0.0
        )
        return data


@dataclass
class CurationStats:
    """Accumulates decisions in document order; cheap enough to update once per document."""

    stages: list[str]
    rules: list[str]
    examples_per_rule: int
    chain: Chain = field(init=False)
    source_chains: dict[str, Chain] = field(default_factory=dict)
    source_counts: dict[str, Counts] = field(default_factory=dict)
    examples: dict[str, list[Example]] = field(default_factory=dict)
    redactions: Counter = field(default_factory=Counter)
    redacted_docs: int = 0
    paragraphs: ParagraphCounts = field(default_factory=ParagraphCounts)
    stage_info: dict[str, dict[str, Any]] = field(default_factory=dict)  # e.g. the reference files

    def __post_init__(self) -> None:
        self.chain = Chain(self.stages, self.rules)

    @property
    def stage_counts(self) -> dict[str, Counts]:
        return self.chain.stage_counts

    @property
    def rule_counts(self) -> dict[str, Counts]:
        return self.chain.rule_counts

    def add(
        self, record: DocRecord, removal: Removal | None, cut: ParagraphCut | None = None
    ) -> Example | None:
        """Count one document; returns the Example if it was chosen for the report."""
        words = record.num_words
        self.chain.add(words, removal, cut)
        self.source_chains.setdefault(record.source, Chain(self.stages, self.rules)).add(words, removal, cut)
        if "paragraph_dedup" in self.stages and (removal is None or removal.stage == "paragraph_dedup"):
            self.paragraphs.add(record, removal, cut)
        self.source_counts.setdefault(record.source, Counts()).add(
            words, removal is not None, cut.words if cut is not None else 0
        )
        if removal is None:
            if any(record.redactions.values()):
                self.redacted_docs += 1
            self.redactions.update(record.redactions)
            return None
        return self._maybe_example(record, removal)

    def _maybe_example(self, record: DocRecord, removal: Removal) -> Example | None:
        key = removal.key
        bucket = self.examples.setdefault(key, [])
        if len(bucket) >= self.examples_per_rule:
            return None
        example = Example(
            record.ordinal, record.doc_id, record.source, removal.detail, removal.duplicate_of, record.text
        )
        bucket.append(example)
        return example

    def totals(self) -> Counts:
        total = Counts()
        for counts in self.source_counts.values():
            total.docs_in += counts.docs_in
            total.docs_removed += counts.docs_removed
            total.words_in += counts.words_in
            total.words_removed += counts.words_removed
        return total


def _fractions(counts: Counts) -> dict[str, Any]:
    data: dict[str, Any] = counts.as_dict()
    data["kept_fraction_docs"] = round(data["docs_kept"] / data["docs_in"], 6) if data["docs_in"] else 0.0
    data["kept_fraction_words"] = round(data["words_kept"] / data["words_in"], 6) if data["words_in"] else 0.0
    return data


def _examples(stats: CurationStats, key: str) -> list[dict[str, Any]]:
    return [example.as_dict() for example in stats.examples.get(key, [])]


def _stage_entry(stats: CurationStats, stage: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"stage": stage, **stats.stage_counts[stage].as_dict()}
    if stage == "filters":
        entry["rules"] = [
            {
                "rule": rule,
                **stats.rule_counts[rule].as_dict(),
                "examples": _examples(stats, f"filters.{rule}"),
            }
            for rule in stats.rules
        ]
    elif stage == "redact":
        entry["redactions"] = {
            **dict(sorted(stats.redactions.items())),
            "documents_changed": stats.redacted_docs,
        }
    else:
        if stage == "paragraph_dedup":
            entry["paragraphs"] = stats.paragraphs.as_dict()
        entry.update(stats.stage_info.get(stage, {}))
        entry["examples"] = _examples(stats, stage)
    return entry


def _source_stages(chain: Chain) -> list[dict[str, Any]]:
    """One source's chain: documents and words in/removed/kept per stage and rule (no examples)."""
    entries = []
    for stage in chain.stages:
        entry: dict[str, Any] = {"stage": stage, **chain.stage_counts[stage].as_dict()}
        if stage == "filters":
            entry["rules"] = [{"rule": rule, **chain.rule_counts[rule].as_dict()} for rule in chain.rules]
        entries.append(entry)
    return entries


def build_report(
    stats: CurationStats,
    config: dict[str, Any],
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    """The report.json document; a pure function of the decisions, so it is identical across workers."""
    return {
        "format": REPORT_FORMAT,
        "inputs": inputs,
        "config": config,
        "stages": [_stage_entry(stats, stage) for stage in stats.stages],
        "sources": [
            {"source": name, **_fractions(c), "stages": _source_stages(stats.source_chains[name])}
            for name, c in stats.source_counts.items()
        ],
        "totals": _fractions(stats.totals()),
        "outputs": outputs,
    }


def words_by_source(report: dict[str, Any]) -> list[tuple[str, list[dict[str, Any] | None]]]:
    """Rows (stage or '  rule', one counts entry per source) for the words-kept-per-source table;
    shared by report.md and the terminal so both show the same cells."""
    per_source = [{e["stage"]: e for e in source["stages"]} for source in report["sources"]]
    rows: list[tuple[str, list[dict[str, Any] | None]]] = []
    for stage in report["stages"]:
        name = stage["stage"]
        rows.append((name, [entries.get(name) for entries in per_source]))
        for rule in stage.get("rules", []):
            cells = []
            for entries in per_source:
                rules = {r["rule"]: r for r in entries[name]["rules"]} if name in entries else {}
                cells.append(rules.get(rule["rule"]))
            rows.append((f"  {rule['rule']}", cells))
    return rows


def words_cell(counts: dict[str, Any] | None) -> str:
    if counts is None or not counts["words_in"]:
        return "-"
    return f"{counts['words_kept'] / counts['words_in']:.1%}"


def _row(name: str, counts: dict[str, Any]) -> str:
    kept = counts["docs_kept"] / counts["docs_in"] if counts["docs_in"] else 0.0
    return (
        f"| {name} | {counts['docs_in']:,} | {counts['docs_removed']:,} | {counts['docs_kept']:,} | "
        f"{counts['words_in']:,} | {counts['words_removed']:,} | {counts['words_kept']:,} | {kept:.1%} |"
    )


def _example_lines(title: str, examples: list[dict[str, Any]]) -> list[str]:
    lines = []
    for example in examples:
        dup = f" (duplicate of `{example['duplicate_of']}`)" if "duplicate_of" in example else ""
        lines.append(f"- **{title}** `{example['id']}`{dup}: {example['detail']}  \n  > {example['text']}")
    return lines


def _words_table(report: dict[str, Any]) -> list[str]:
    names = [source["source"] for source in report["sources"]]
    lines = [
        "",
        "## Words kept per source, by stage and rule",
        "",
        "Each cell: words kept / words that reached the stage or rule, and the share kept. A rule that",
        "removes much of one source is worth a look (see the README's domain caveats).",
        "",
        "| stage / rule | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for name, cells in words_by_source(report):
        text = [
            "-"
            if c is None or not c["words_in"]
            else f"{c['words_kept']:,} / {c['words_in']:,} ({words_cell(c)})"
            for c in cells
        ]
        label = f"&nbsp;&nbsp;{name.strip()}" if name.startswith("  ") else f"**{name}**"
        lines.append(f"| {label} | " + " | ".join(text) + " |")
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    """report.json -> a human-readable report.md (same numbers, plus the quoted examples)."""
    totals = report["totals"]
    lines = [
        "# Curation report",
        "",
        f"Kept {totals['docs_kept']:,} of {totals['docs_in']:,} documents "
        f"({totals['kept_fraction_docs']:.1%}) and {totals['words_kept']:,} of {totals['words_in']:,} words "
        f"({totals['kept_fraction_words']:.1%}).",
        "",
        _HEADER,
        _SEPARATOR,
    ]
    examples: list[str] = []
    for stage in report["stages"]:
        lines.append(_row(f"**{stage['stage']}**", stage))
        for rule in stage.get("rules", []):
            lines.append(_row(f"&nbsp;&nbsp;{rule['rule']}", rule))
            examples += _example_lines(f"filters.{rule['rule']}", rule["examples"])
        examples += _example_lines(stage["stage"], stage.get("examples", []))
    redact = next((s for s in report["stages"] if s["stage"] == "redact"), None)
    if redact:
        found = ", ".join(f"{k} {v:,}" for k, v in redact["redactions"].items())
        lines += ["", f"Redactions in kept documents: {found}."]
    paragraphs = next((s for s in report["stages"] if s["stage"] == "paragraph_dedup"), None)
    if paragraphs:
        p = paragraphs["paragraphs"]
        lines += [
            "",
            f"Paragraph dedup removed {p['paragraphs_removed']:,} of {p['paragraphs_in']:,} paragraphs, "
            f"{p['bytes_removed']:,} of {p['bytes_in']:,} bytes ({p['removed_fraction_bytes']:.1%}) and "
            f"{p['words_removed']:,} words from {p['documents_changed']:,} kept documents.",
        ]
    decontaminate = next((s for s in report["stages"] if s["stage"] == "decontaminate"), None)
    if decontaminate:
        lines += [
            "",
            f"Decontamination against {decontaminate['reference_documents']:,} reference documents "
            f"({decontaminate['reference_ngrams']:,} distinct n-grams): "
            f"{decontaminate['docs_removed']:,} training documents removed.",
        ]
    lines += ["", "## Per source", "", _HEADER.replace("stage / rule", "source"), _SEPARATOR]
    lines += [_row(source["source"], source) for source in report["sources"]]
    lines += _words_table(report)
    lines += ["", "## Example removals", ""] + (examples or ["(none)"])
    return "\n".join(lines) + "\n"
