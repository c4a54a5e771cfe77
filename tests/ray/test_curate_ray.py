"""`curate --executor ray` on a real local Ray cluster (head + worker node, see conftest.py) gives the
local executor's output byte for byte: kept documents, removal log, report.json and report.md."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from domainlm.assets import sample_corpus
from domainlm.corpus.curate import curate, load_curate_config, parse_corpus_args
from domainlm.outputs import MARKER_NAME
from tests.ray.faults import MARKER_ENV

pytestmark = [pytest.mark.slow, pytest.mark.ray]


def _paragraph_pool(limit: int) -> list[str]:
    """Distinct 60-150 word paragraphs of the shipped general sample (each passes every rule)."""
    found: list[str] = []
    with gzip.open(sample_corpus("general"), "rt", encoding="utf-8") as handle:
        for line in handle:
            for block in json.loads(line)["text"].split("\n\n"):
                text = " ".join(block.split())
                if 60 <= len(text.split()) <= 150 and text not in found:
                    found.append(text)
                    if len(found) == limit:
                        return found
    raise AssertionError("not enough paragraphs in the general sample")


def _changed(text: str, count: int, tag: str) -> str:
    words = text.split()
    step = len(words) // (count + 1)
    for k in range(1, count + 1):
        words[k * step] = f"{tag}{k}"
    return " ".join(words)


def _write(path: Path, texts: list[str]) -> Path:
    path.write_bytes(gzip.compress("".join(json.dumps({"text": t}) + "\n" for t in texts).encode()))
    return path


@pytest.fixture(scope="module")
def duplicate_heavy(tmp_path_factory) -> tuple[list[str], Path]:
    """Two sources, three files; most documents are exact, normalized, near or chained copies.

    Chains test the resolution: B is A with 12 of ~120 words changed, C is B with 12 more changed,
    so C matches B but not A; with B removed (a near copy of A), C must be kept, as locally.
    Also: a shared boilerplate paragraph (paragraph dedup), e-mail addresses (redaction), a
    document quoting the reference text (decontamination), short and looped documents (filters).
    """
    root = tmp_path_factory.mktemp("heavy")
    pool = _paragraph_pool(36)
    clean = [pool[2 * i] + "\n\n" + pool[2 * i + 1] for i in range(16)]
    boiler = pool[32]
    first, second, third = [], [], []
    for i, text in enumerate(clean[:8]):
        first += [text, text, "  " + text.replace(" ", " \t ") + "\n"]
        first.append(_changed(text, 3, "near"))
        chained = _changed(text, 12, "B")
        first += [chained, _changed(chained, 12, "C")]
        first.append(text + "\n\n" + boiler + f"\n\nwrite to clerk{i}@example.com")
    for text in clean[8:]:
        second += [_changed(text, 2, "x"), text, clean[0], text + "\n\n" + boiler]
    third = [clean[3], "Too short to be a document.", " ".join(["the cost of tea and sugar"] * 20)]
    third += [pool[34] + "\n\n" + pool[35], clean[9], _changed(clean[12], 4, "y")]
    reference = _write(root / "eval.jsonl.gz", [pool[34]])
    for folder, texts in (("b1", second), ("b2", third)):  # same file name: ids name the folder too
        (root / "beta" / folder).mkdir(parents=True)
        _write(root / "beta" / folder / "part.jsonl.gz", texts)
    return [f"alpha={_write(root / 'alpha.jsonl.gz', first)}", f"beta={root / 'beta'}"], reference


def _heavy_config(reference: Path):
    cfg = load_curate_config(None, ["redact.enabled=true", "paragraph_dedup.enabled=true"])
    cfg.decontaminate.references = [str(reference)]
    return cfg


def _assert_identical(local: Path, ray: Path) -> dict:
    """Every output file, byte for byte (not the output marker: it records when it was made)."""
    names = sorted(p.name for p in local.iterdir() if p.name != MARKER_NAME)
    assert names == sorted(p.name for p in ray.iterdir() if p.name != MARKER_NAME) and len(names) >= 4
    for name in names:
        assert (ray / name).read_bytes() == (local / name).read_bytes(), name
    return json.loads((local / "report.json").read_text())


def test_shipped_samples_byte_identical(ray_address, tmp_path):
    """The finance sample whole and the first documents of legal and medical (the CI budget: the
    four whole samples take minutes per executor on 2 cores), as three sources."""
    args = [str(sample_corpus("finance"))]
    for name, lines in (("legal", 60), ("medical", 60)):
        with gzip.open(sample_corpus(name), "rb") as handle:
            head = b"".join(line for _, line in zip(range(lines), handle, strict=False))
        (tmp_path / f"{name}.jsonl.gz").write_bytes(gzip.compress(head, mtime=0))
        args.append(str(tmp_path / f"{name}.jsonl.gz"))
    specs = parse_corpus_args(args)
    cfg = load_curate_config(None, [])
    curate(specs, cfg, out=tmp_path / "local", workers=1)
    result = curate(specs, cfg, out=tmp_path / "ray", executor="ray", ray_address=ray_address)
    report = _assert_identical(tmp_path / "local", tmp_path / "ray")
    assert report == result.report
    assert report["totals"]["docs_in"] == 158
    assert 0 < report["totals"]["docs_removed"] < 158


def test_duplicate_heavy_byte_identical(ray_address, duplicate_heavy, tmp_path):
    args, reference = duplicate_heavy
    specs = parse_corpus_args(args)
    cfg = _heavy_config(reference)
    curate(specs, cfg, out=tmp_path / "local", workers=1)
    curate(specs, cfg, out=tmp_path / "ray", executor="ray", ray_address=ray_address)
    report = _assert_identical(tmp_path / "local", tmp_path / "ray")
    stages = {s["stage"]: s["docs_removed"] for s in report["stages"]}
    # Every dedup path is exercised: copies, near copies, paragraphs, contamination, rules.
    assert stages["exact_dedup"] >= 20 and stages["near_dedup"] >= 10
    assert stages["decontaminate"] == 1 and stages["filters"] == 2
    by_stage = [s for s in report["stages"] if s["stage"] == "paragraph_dedup"][0]
    assert by_stage["paragraphs"]["paragraphs_removed"] >= 8
    kept = gzip.decompress((tmp_path / "ray" / "alpha.jsonl.gz").read_bytes()).decode()
    assert "[EMAIL]" in kept or "@example.com" not in kept
    assert report["inputs"][1]["read"]["files"] == 2
    removed = gzip.decompress((tmp_path / "ray" / "removed.jsonl.gz").read_bytes()).decode()
    assert '"id": "b2/part.jsonl.gz:2"' in removed  # the short document, named as the local reader names it


def test_worker_killed_mid_run_is_retried(ray_address, duplicate_heavy, tmp_path):
    """A worker SIGKILLed in its first document (tests/ray/faults.py) is retried by Ray; same bytes."""
    import ray

    args, reference = duplicate_heavy
    specs = parse_corpus_args(args)
    cfg = _heavy_config(reference)
    curate(specs, cfg, out=tmp_path / "local", workers=1)
    marker = tmp_path / "killed.pid"
    runtime_env = {
        "worker_process_setup_hook": "tests.ray.faults.kill_once",
        "env_vars": {MARKER_ENV: str(marker)},
    }
    ray.init(address=ray_address, runtime_env=runtime_env, log_to_driver=False)
    try:
        curate(specs, cfg, out=tmp_path / "ray", executor="ray")
    finally:
        ray.shutdown()
    killed = int(marker.read_text())
    assert killed != os.getpid() and not Path(f"/proc/{killed}").exists()
    _assert_identical(tmp_path / "local", tmp_path / "ray")


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "domainlm", "curate", *args, "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_corrupt_file_same_error_as_local(ray_address, tmp_path):
    good = sample_corpus("finance")
    corrupt = tmp_path / "broken.jsonl.gz"
    corrupt.write_bytes(good.read_bytes()[:20000])  # cut mid-stream
    local = _cli(str(good), str(corrupt), "--out", str(tmp_path / "local"), "-w", "1")
    ray = _cli(
        str(good),
        str(corrupt),
        "--out",
        str(tmp_path / "ray"),
        "--executor",
        "ray",
        "--ray-address",
        ray_address,
    )
    assert local.returncode == ray.returncode == 2
    line = local.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and str(corrupt) in line and "gzip -t" in line
    assert ray.stderr.strip().splitlines()[-1] == line
    assert not (tmp_path / "local").exists() and not (tmp_path / "ray").exists()
