"""Paths to the data shipped inside the package: sample corpora, reference tokenizers, term lists.

Provenance and licenses: assets/corpora/README.md.
"""

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent
CORPORA_DIR = ASSETS_DIR / "corpora"
TOKENIZERS_DIR = ASSETS_DIR / "tokenizers"
TERMS_DIR = ASSETS_DIR / "terms"

SAMPLE_DOMAINS = ("finance", "legal", "medical", "general")


def sample_corpus(domain: str) -> Path:
    """The shipped gzip JSON Lines sample for `domain` (one of SAMPLE_DOMAINS)."""
    return CORPORA_DIR / f"{domain}.jsonl.gz"


def reference_tokenizer(name: str) -> Path:
    """A shipped reference tokenizer directory: 'gpt2' or 'bert-base-uncased'."""
    return TOKENIZERS_DIR / name


def term_list(domain: str) -> Path:
    """The shipped jargon list for 'legal', 'finance' or 'medical'."""
    return TERMS_DIR / f"{domain}_terms.txt"
