"""Paths to the data shipped with the package: sample corpora, reference tokenizers, term lists,
recipes and data mixes.

Provenance and licenses: assets/corpora/README.md. Recipes and data mixes live in the repository's
top-level `recipes/` and `data_mixes/` (the one copy); a regular `pip install .` ships them inside
the package as `domainlm/recipes` and `domainlm/data_mixes` (setup.py maps those packages to the
top-level folders). `shipped_recipes_dir()` / `shipped_mixes_dir()` find them in either layout.
"""

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent
PACKAGE_DIR = ASSETS_DIR.parent
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


def _shipped_dir(name: str) -> Path:
    """`domainlm/<name>` in an installed package, else `<repo>/<name>` (source tree, editable install)."""
    installed = PACKAGE_DIR / name
    return installed if installed.is_dir() else PACKAGE_DIR.parent / name


def shipped_recipes_dir() -> Path:
    """The folder of the shipped recipe YAMLs (legal, finance, medical, tiny_cpu)."""
    return _shipped_dir("recipes")


def shipped_mixes_dir() -> Path:
    """The folder of the shipped data mix YAMLs (finance_51_49, legal_50_50, medical_60_40)."""
    return _shipped_dir("data_mixes")


def shipped_searches_dir() -> Path:
    """The folder of the shipped `domainlm mixsearch` YAMLs (finance)."""
    return _shipped_dir("searches")


def shipped_search(name: str) -> Path | None:
    """'finance' -> the shipped search YAML; None when no shipped search has that name."""
    path = shipped_searches_dir() / f"{name}.yaml"
    return path if _is_name(name) and path.is_file() else None


def shipped_mix(name: str) -> Path | None:
    """'finance_51_49' -> the shipped mix YAML; None when no shipped mix has that name."""
    path = shipped_mixes_dir() / f"{name}.yaml"
    return path if _is_name(name) and path.is_file() else None


def shipped_tokenizer(name: str) -> Path | None:
    """'gpt2' -> the shipped tokenizer directory; None when `name` names no shipped tokenizer."""
    path = TOKENIZERS_DIR / name
    return path if _is_name(name) and path.is_dir() else None


def shipped_corpus(name: str) -> Path | None:
    """'finance' -> the shipped finance sample; None when `name` is not one of SAMPLE_DOMAINS."""
    return sample_corpus(name) if name in SAMPLE_DOMAINS else None


def _is_name(text: str) -> bool:
    """A bare name (no folder part, not '.' or '..'): only such a value can name a shipped asset."""
    return bool(text) and text not in (".", "..") and "/" not in text and "\\" not in text
