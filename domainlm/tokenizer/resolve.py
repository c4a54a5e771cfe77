"""Command-line names -> paths: `NAME=PATH`, a bare path, or a shipped shortcut (gpt2, legal, ...).

Shortcuts resolve to `domainlm/assets`: tokenizers `gpt2` and `bert-base-uncased`; corpora
`finance`, `legal`, `medical`, `general`; term lists `finance`, `legal`, `medical` and
`medical-abbreviations` (the keys of the shipped abbreviation JSON).
"""

from __future__ import annotations

from pathlib import Path

from domainlm.assets import SAMPLE_DOMAINS, TERMS_DIR, TOKENIZERS_DIR, sample_corpus, term_list
from domainlm.naming import name_from_path, split_named
from domainlm.storage import is_url

SHIPPED_TOKENIZERS = ("gpt2", "bert-base-uncased")
SHIPPED_TERM_LISTS = ("finance", "legal", "medical", "medical-abbreviations")


def shipped_tokenizer_dir(name: str) -> Path | None:
    """'gpt2' / 'bert-base-uncased' -> the shipped tokenizer folder; None for any other text."""
    return TOKENIZERS_DIR / name if name in SHIPPED_TOKENIZERS else None


def resolve_tokenizer(text: str) -> tuple[str, Path]:
    """'gpt2' -> shipped GPT-2; 'mine=out/tok' -> ('mine', out/tok); 'out/tok' -> ('tok', out/tok)."""
    name, value = split_named(text, "--tokenizer")
    shipped = shipped_tokenizer_dir(value)
    if shipped is not None and not Path(value).exists():
        return name or value, shipped
    return name or name_from_path(value), Path(value).expanduser()


def resolve_corpus(text: str) -> tuple[str, Path | str]:
    """'legal' -> the shipped legal sample; 'fin=data/fin/*.jsonl' -> ('fin', that glob); a URL
    (fin=s3://bucket/fin/) stays a str."""
    name, value = split_named(text, "--corpus")
    if value in SAMPLE_DOMAINS and not Path(value).exists():
        return name or value, sample_corpus(value)
    return name or name_from_path(value), value if is_url(value) else Path(value).expanduser()


def resolve_terms(text: str) -> tuple[str, Path]:
    """'legal' -> the shipped legal term list; 'mine=terms.txt' -> ('mine', terms.txt)."""
    name, value = split_named(text, "--terms")
    if value in SHIPPED_TERM_LISTS and not Path(value).exists():
        path = (
            TERMS_DIR / "medical_abbreviations.json" if value == "medical-abbreviations" else term_list(value)
        )
        return name or value, path
    return name or name_from_path(value), Path(value).expanduser()
