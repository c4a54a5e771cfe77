"""Kept documents -> the same documents without paragraphs that repeat an earlier one verbatim.

Whole-document dedup leaves boilerplate inside distinct documents (a licence block pasted into 33
licences). Like the exact stage it is global and first-seen-wins, so it runs in the merge, in
document order: workers compute one digest per paragraph (`paragraph_keys`), the merge decides
which paragraphs go (`ParagraphIndex.cut`), and the writer drops them (`drop_paragraphs`). Memory:
one digest per distinct paragraph of the kept documents (~100 bytes each).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from domainlm.corpus.curate.config import ParagraphDedupConfig
from domainlm.corpus.curate.filters import count_words

_PARAGRAPH_BREAK = re.compile(r"\n(?:[^\S\n]*\n)+")  # one or more blank lines; indentation kept


@dataclass(frozen=True)
class ParagraphKey:
    """One paragraph: its digest (None: too short to be removed), words and UTF-8 bytes."""

    digest: bytes | None
    words: int
    num_bytes: int


@dataclass(frozen=True)
class ParagraphCut:
    """The paragraphs (indexes into `split_paragraphs`) to drop from one document, and their size."""

    drop: tuple[int, ...]
    words: int
    num_bytes: int
    paragraphs: int  # paragraphs in the document


def split_paragraphs(text: str) -> list[str]:
    """Blocks separated by blank lines (lines with only spaces count as blank), surrounding blank
    space stripped; the same split on the worker and in the writer, so indexes agree."""
    return [block for block in (b.strip("\n") for b in _PARAGRAPH_BREAK.split(text)) if block.strip()]


def paragraph_keys(text: str, config: ParagraphDedupConfig) -> list[ParagraphKey]:
    keys = []
    for block in split_paragraphs(text):
        words = count_words(block)
        digest = None
        if words >= config.min_words:
            digest = hashlib.blake2b(
                " ".join(block.split()).encode(), digest_size=config.digest_bytes
            ).digest()
        keys.append(ParagraphKey(digest, words, len(block.encode("utf-8"))))
    return keys


def drop_paragraphs(text: str, drop: tuple[int, ...]) -> str:
    """The text without the dropped paragraphs, the rest joined by one blank line."""
    dropped = set(drop)
    return "\n\n".join(block for i, block in enumerate(split_paragraphs(text)) if i not in dropped)


class ParagraphIndex:
    """digest of every paragraph kept so far; `cut` must be called in document order."""

    def __init__(self) -> None:
        self._seen: set[bytes] = set()

    def cut(self, keys: list[ParagraphKey]) -> ParagraphCut | None:
        drop = []
        for index, key in enumerate(keys):
            if key.digest is None:
                continue
            if key.digest in self._seen:
                drop.append(index)
            else:
                self._seen.add(key.digest)
        if not drop:
            return None
        return ParagraphCut(
            tuple(drop),
            words=sum(keys[i].words for i in drop),
            num_bytes=sum(keys[i].num_bytes for i in drop),
            paragraphs=len(keys),
        )
