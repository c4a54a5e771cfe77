"""DocRecords and dedup partition blocks <-> Arrow IPC bytes: what crosses machines in a Ray run.

A data format, not pickle: a pickle read back from shared storage or another node is code that
whoever wrote it can make the reader run. Arrow keeps the signatures as raw bytes (4 bytes per
permutation) and round-trips every field exactly, so the merge sees the records a local run sees.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa

from domainlm.corpus.curate.decontaminate import Contamination
from domainlm.corpus.curate.dedup_paragraph import ParagraphKey
from domainlm.corpus.curate.filters import Verdict
from domainlm.corpus.curate.process import DocRecord

_PARAGRAPH = pa.struct([("digest", pa.binary()), ("words", pa.int64()), ("num_bytes", pa.int64())])
RECORD_SCHEMA = pa.schema(
    [
        ("ordinal", pa.int64()),
        ("doc_id", pa.string()),
        ("source", pa.string()),
        ("num_words", pa.int64()),
        ("digest", pa.binary()),
        ("verdict_rule", pa.string()),
        ("verdict_detail", pa.string()),
        ("signature", pa.binary()),
        ("redactions", pa.string()),  # JSON object: a few counters
        ("text", pa.string()),
        ("contamination_reference", pa.string()),
        ("contamination_overlap", pa.int64()),
        ("paragraphs", pa.list_(_PARAGRAPH)),
    ]
)
SIGNATURE_DTYPE = np.uint32  # datasketch's affine32 scheme (dedup_near._SCHEME)


def to_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def from_ipc(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


def records_table(records: list[DocRecord]) -> pa.Table:
    rows: dict[str, list[Any]] = {name: [] for name in RECORD_SCHEMA.names}
    for r in records:
        rows["ordinal"].append(r.ordinal)
        rows["doc_id"].append(r.doc_id)
        rows["source"].append(r.source)
        rows["num_words"].append(r.num_words)
        rows["digest"].append(r.digest)
        rows["verdict_rule"].append(r.verdict.rule if r.verdict else None)
        rows["verdict_detail"].append(r.verdict.detail if r.verdict else None)
        rows["signature"].append(
            None if r.signature is None else r.signature.astype(SIGNATURE_DTYPE).tobytes()
        )
        rows["redactions"].append(json.dumps(r.redactions))
        rows["text"].append(r.text)
        rows["contamination_reference"].append(r.contamination.reference if r.contamination else None)
        rows["contamination_overlap"].append(r.contamination.overlap if r.contamination else None)
        rows["paragraphs"].append(
            None
            if r.paragraphs is None
            else [{"digest": k.digest, "words": k.words, "num_bytes": k.num_bytes} for k in r.paragraphs]
        )
    return pa.Table.from_pydict(rows, schema=RECORD_SCHEMA)


def signature_of(data: bytes | None) -> np.ndarray | None:
    return None if data is None else np.frombuffer(data, dtype=SIGNATURE_DTYPE).copy()


def iter_records(table: pa.Table) -> list[DocRecord]:
    """The DocRecords of one table, fields exactly as they were computed."""
    records = []
    for row in table.to_pylist():
        verdict = (
            Verdict(row["verdict_rule"], row["verdict_detail"]) if row["verdict_rule"] is not None else None
        )
        contamination = (
            Contamination(row["contamination_reference"], row["contamination_overlap"])
            if row["contamination_reference"] is not None
            else None
        )
        paragraphs = (
            None
            if row["paragraphs"] is None
            else [ParagraphKey(p["digest"], p["words"], p["num_bytes"]) for p in row["paragraphs"]]
        )
        records.append(
            DocRecord(
                ordinal=row["ordinal"],
                doc_id=row["doc_id"],
                source=row["source"],
                num_words=row["num_words"],
                digest=row["digest"],
                verdict=verdict,
                signature=signature_of(row["signature"]),
                redactions=json.loads(row["redactions"]),
                text=row["text"],
                contamination=contamination,
                paragraphs=paragraphs,
            )
        )
    return records
