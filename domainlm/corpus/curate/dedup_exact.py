"""Normalized texts -> exact-duplicate verdicts, keeping a fixed-size digest per document, not the text."""

from __future__ import annotations

import hashlib


def text_digest(text: str, digest_bytes: int = 16) -> bytes:
    """blake2b of the UTF-8 text: stable across runs and processes (unlike hash())."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=digest_bytes).digest()


class ExactIndex:
    """digest -> id of the first document seen with it.

    Memory is about 150 bytes per distinct document (a 16-byte digest, the id string, a dict slot),
    independent of document length; above ~10^8 documents, run sharded and split the merge by
    digest prefix (see the README).
    """

    def __init__(self) -> None:
        self._first: dict[bytes, str] = {}

    def __len__(self) -> int:
        return len(self._first)

    def first_seen(self, digest: bytes, doc_id: str) -> str | None:
        """The id of an earlier document with this digest, or None (and remember this one)."""
        earlier = self._first.get(digest)
        if earlier is None:
            self._first[digest] = doc_id
        return earlier
