"""The same corpus in two folders curates to the same bytes: document ids name files relative to
the corpus path given, never where the corpus lies."""

import gzip
import json
import shutil

from domainlm.corpus.curate import CurateConfig, curate, parse_corpus_args
from domainlm.outputs import MARKER_NAME
from tests.corpus.curate.conftest import change_words, write_jsonl


def _corpus(root, paragraphs):
    """legal/ (a folder with a sub-folder, copies across its files) and fin.jsonl (a file)."""
    docs = [paragraphs[2 * i] + "\n\n" + paragraphs[2 * i + 1] for i in range(8)]
    (root / "legal" / "sub").mkdir(parents=True)
    write_jsonl(root / "legal" / "a.jsonl.gz", docs[:3])
    write_jsonl(root / "legal" / "sub" / "a.jsonl.gz", [docs[3], docs[0], change_words(docs[1], 3)])
    write_jsonl(root / "fin.jsonl", [docs[4], docs[5], docs[3], "Too short to be a document.", docs[6]])
    return [f"legal={root / 'legal'}", str(root / "fin.jsonl")]


def _outputs(out):
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.name != MARKER_NAME}


def _records(data):
    return [json.loads(line) for line in gzip.decompress(data).decode().splitlines()]


def test_the_same_corpus_in_two_folders_curates_to_the_same_bytes(tmp_path, paragraphs):
    first = _corpus(tmp_path / "one", paragraphs)
    shutil.copytree(tmp_path / "one", tmp_path / "elsewhere" / "two")
    second = [arg.replace(str(tmp_path / "one"), str(tmp_path / "elsewhere" / "two")) for arg in first]
    curate(parse_corpus_args(first), CurateConfig(), out=tmp_path / "out1")
    curate(parse_corpus_args(second), CurateConfig(), out=tmp_path / "out2", workers=2, shards=3)
    one, two = _outputs(tmp_path / "out1"), _outputs(tmp_path / "out2")
    assert sorted(one) == ["fin.jsonl.gz", "legal.jsonl.gz", "removed.jsonl.gz", "report.json", "report.md"]
    report_one, report_two = json.loads(one.pop("report.json")), json.loads(two.pop("report.json"))
    assert one == two  # kept documents, removal log, report.md: byte for byte
    # the report names the files each run read (where they lie), and nothing else differs
    assert [i.pop("paths") for i in report_two["inputs"]] == [
        [str(tmp_path / "elsewhere" / "two" / p) for p in ("legal/a.jsonl.gz", "legal/sub/a.jsonl.gz")],
        [str(tmp_path / "elsewhere" / "two" / "fin.jsonl")],
    ]
    assert [len(i.pop("paths")) for i in report_one["inputs"]] == [2, 1] and report_one == report_two
    removed = [(r["id"], r["stage"], r.get("duplicate_of")) for r in _records(one["removed.jsonl.gz"])]
    assert removed == [
        ("sub/a.jsonl.gz:2", "exact_dedup", "a.jsonl.gz:1"),
        ("sub/a.jsonl.gz:3", "near_dedup", "a.jsonl.gz:2"),
        ("fin.jsonl:3", "exact_dedup", "sub/a.jsonl.gz:1"),
        ("fin.jsonl:4", "filters", None),
    ]
    kept = _records(one["legal.jsonl.gz"])
    assert [r["id"] for r in kept] == ["a.jsonl.gz:1", "a.jsonl.gz:2", "a.jsonl.gz:3", "sub/a.jsonl.gz:1"]
