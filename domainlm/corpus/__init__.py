"""Stage 0: corpus files (txt, jsonl[.gz|.zst], parquet, saved `datasets`) -> Iterator[Document]."""

from domainlm.corpus.readers import CorpusReader, Document, ReadStats, expand_paths

__all__ = ["CorpusReader", "Document", "ReadStats", "expand_paths"]
