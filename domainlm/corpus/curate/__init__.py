"""Curation: corpora -> normalized, deduplicated (exact + MinHash near), decontaminated (against
reference text, when given), quality-filtered, optionally redacted and paragraph-deduplicated
documents plus a report of what each stage and rule removed. Entry point: `curate`."""

from domainlm.corpus.curate.config import DEFAULT_CONFIG_PATH, CurateConfig, load_curate_config
from domainlm.corpus.curate.inputs import CorpusSpec, parse_corpus_args
from domainlm.corpus.curate.pipeline import CurateResult, curate

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "CorpusSpec",
    "CurateConfig",
    "CurateResult",
    "curate",
    "load_curate_config",
    "parse_corpus_args",
]
