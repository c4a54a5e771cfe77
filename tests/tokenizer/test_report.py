from __future__ import annotations

import json
from pathlib import Path

import pytest

from domainlm.tokenizer.coverage import build_coverage_report
from domainlm.tokenizer.report import headlines, render_markdown, write_report


@pytest.fixture(scope="module")
def report(hand_inputs: dict[str, Path]) -> dict:
    return build_coverage_report(
        [("small", hand_inputs["small"]), ("big", hand_inputs["big"])],
        [("hand", hand_inputs["corpus"])],
        [("terms", hand_inputs["terms"])],
        top_words=3,
    )


def test_write_report_writes_every_file_deterministically(report: dict, tmp_path: Path) -> None:
    files = write_report(report, tmp_path / "a")
    names = sorted(p.name for p in files)
    assert names == ["overview.png", "report.html", "report.json", "report.md", "terms_terms.png"]
    assert json.loads((tmp_path / "a" / "report.json").read_text()) == json.loads(json.dumps(report))
    for png in ("overview.png", "terms_terms.png"):
        assert (tmp_path / "a" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    write_report(report, tmp_path / "b")
    for path in files:
        assert path.read_bytes() == (tmp_path / "b" / path.name).read_bytes(), path.name


def test_html_embeds_charts_and_escapes_text(report: dict, tmp_path: Path) -> None:
    write_report(report, tmp_path / "r")
    page = (tmp_path / "r" / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 2
    assert '<span class="piece">jud</span><span class="piece">##ic</span>' in page
    assert "<script" not in page and "d&#x27;" not in page


def test_markdown_has_tables_headline_and_definitions(report: dict) -> None:
    text = render_markdown(report)
    assert "| hand | big | 1.222 |" in text  # 11 tokens / 9 words
    assert "| judicata | 1 | `jud` `##ic` `##ata` | `judicata` |" in text
    assert "![coverage overview](overview.png)" in text and "## Definitions" in text
    (line,) = headlines(report)
    # Both WordPiece tokenizers turn "dög" into [UNK]: 3 of the 41 characters (7.3%) do not come back,
    # so the shorter one is never crowned without saying so in the same sentence.
    lossy = "lossy: decode(encode(text)) changes 50% of documents and 7.3% of characters (7.3% other)"
    assert line == (
        f"hand: big needs 21.4% fewer tokens than small ({lossy}), but it is {lossy}; "
        "no tokenizer here is lossless."
    )
    # digit tokens, documents and characters changed by the round trip are columns of the table
    assert (
        "| hand | big | 1.222 | 3.82 | 3.73 | 22.2% | 9.09% | 0.00% | 62.5% | 0.786 | 0.0% | 50.0% | 7.32% |"
        in text
    )
