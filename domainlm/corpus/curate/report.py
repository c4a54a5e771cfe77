"""Per-document decisions -> per-stage / per-rule / per-source counts, examples, report.json and report.md.

Every document enters the first stage and walks the stages in order until the one that removes it,
so for each stage `in = removed + kept` and a stage's `kept` is the next stage's `in`; inside the
filters stage the rules chain the same way. Tests check these identities.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from domainlm.corpus.curate.merge import Removal
from domainlm.corpus.curate.process import DocRecord

REPORT_FORMAT = "domainlm.curate/v1"
STAGES = ("normalize", "exact_dedup", "filters", "near_dedup", "redact")
_SNIPPET_CHARS = 240
_HEADER = "| stage / rule | docs in | removed | kept | words in | removed | kept | docs kept |"
_SEPARATOR = "|---|---:|---:|---:|---:|---:|---:|---:|"


@dataclass
class Counts:
    docs_in: int = 0
    docs_removed: int = 0
    words_in: int = 0
    words_removed: int = 0

    def add(self, num_words: int, removed: bool) -> None:
        self.docs_in += 1
        self.words_in += num_words
        if removed:
            self.docs_removed += 1
            self.words_removed += num_words

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
class CurationStats:
    """Accumulates decisions in document order; cheap enough to update once per document."""

    stages: list[str]
    rules: list[str]
    examples_per_rule: int
    stage_counts: dict[str, Counts] = field(default_factory=dict)
    rule_counts: dict[str, Counts] = field(default_factory=dict)
    source_counts: dict[str, Counts] = field(default_factory=dict)
    examples: dict[str, list[Example]] = field(default_factory=dict)
    redactions: Counter = field(default_factory=Counter)
    redacted_docs: int = 0

    def __post_init__(self) -> None:
        self.stage_counts = {name: Counts() for name in self.stages}
        self.rule_counts = {name: Counts() for name in self.rules}

    def add(self, record: DocRecord, removal: Removal | None) -> Example | None:
        """Count one document; returns the Example if it was chosen for the report."""
        words = record.num_words
        for stage in self.stages:
            removed_here = removal is not None and removal.stage == stage
            self.stage_counts[stage].add(words, removed_here)
            if stage == "filters":
                self._add_rules(words, removal.rule if removed_here else None)
            if removed_here:
                break
        self.source_counts.setdefault(record.source, Counts()).add(words, removal is not None)
        if removal is None:
            if any(record.redactions.values()):
                self.redacted_docs += 1
            self.redactions.update(record.redactions)
            return None
        return self._maybe_example(record, removal)

    def _add_rules(self, words: int, failed_rule: str | None) -> None:
        for rule in self.rules:
            self.rule_counts[rule].add(words, rule == failed_rule)
            if rule == failed_rule:
                return

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
        entry["examples"] = _examples(stats, stage)
    return entry


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
        "sources": [{"source": name, **_fractions(c)} for name, c in stats.source_counts.items()],
        "totals": _fractions(stats.totals()),
        "outputs": outputs,
    }


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
    lines += ["", "## Per source", "", _HEADER.replace("stage / rule", "source"), _SEPARATOR]
    lines += [_row(source["source"], source) for source in report["sources"]]
    lines += ["", "## Example removals", ""] + (examples or ["(none)"])
    return "\n".join(lines) + "\n"
