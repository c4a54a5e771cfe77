"""curate and mix reading from and writing to a real S3 server (moto on 127.0.0.1): the same bytes
as the same runs on local files.

Document ids name files relative to the corpus path given (`fin.jsonl.gz:3` from
`s3://bucket/corpus/fin.jsonl.gz` as from `/tmp/.../fin.jsonl.gz`), so kept documents, removal log
and held-out text are the same bytes. What differs is only what names where the input was read:
curate's report and the mix manifest list the input URLs.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import yaml

from domainlm.assets import reference_tokenizer
from domainlm.errors import DataError
from domainlm.outputs import MARKER_NAME
from tests.cli_runner import run_cli
from tests.storage.conftest import download, upload

GPT2 = str(reference_tokenizer("gpt2"))


def files_of(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def without_marker(files: dict[str, bytes]) -> dict[str, bytes]:
    """The marker holds the time of writing: the one file two runs never share byte for byte."""
    return {name: data for name, data in files.items() if name != MARKER_NAME}


def _records(data: bytes) -> list[dict]:
    return [json.loads(line) for line in gzip.decompress(data).decode("utf-8").splitlines()]


def _mix_yaml(folder: Path, fin: str, gen: str, out: str) -> Path:
    config = {
        "sources": {
            "fin": {"paths": [fin], "ratio": 0.6, "max_repeats": 3},
            "gen": {"paths": [gen], "ratio": 0.4},
        },
        "total_tokens": "all",
        "seq_len": 64,
        "val_fraction": 0.2,
        "seed": 0,
        "tokenizer": GPT2,
        "out": out,
        "shard_tokens": 64 * 100,
    }
    path = folder / f"mix-{len(list(folder.glob('mix-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_curate_and_mix_through_s3_match_the_local_runs(tmp_path, corpus_dir, bucket, monkeypatch, capsys):
    corpus_url = f"{bucket}/corpus"
    upload(corpus_dir, corpus_url)
    args = ["-q", "--workers", "1"]
    local_out = tmp_path / "local-curated"
    local_in = [f"fin={corpus_dir / 'fin.jsonl.gz'}", f"gen={corpus_dir / 'gen.jsonl.gz'}"]
    remote_in = [f"fin={corpus_url}/fin.jsonl.gz", f"gen={corpus_url}/g*.jsonl.gz"]  # a file, a glob
    assert run_cli(monkeypatch, capsys, ["curate", *local_in, "--out", str(local_out), *args])[0] == 0
    # local corpus -> S3 output: every byte the same
    code, err = run_cli(monkeypatch, capsys, ["curate", *local_in, "--out", f"{bucket}/curated-a", *args])
    assert code == 0, err
    local = without_marker(files_of(local_out))
    assert without_marker(files_of(download(f"{bucket}/curated-a", tmp_path / "a"))) == local
    # S3 corpus -> S3 output: kept documents, removal log and report.md byte for byte
    code, err = run_cli(monkeypatch, capsys, ["curate", *remote_in, "--out", f"{bucket}/curated", *args])
    assert code == 0, err
    remote = files_of(download(f"{bucket}/curated", tmp_path / "b"))
    assert json.loads(remote.pop(MARKER_NAME))["command"] == "curate"
    remote_report, local_report = json.loads(remote.pop("report.json")), json.loads(local["report.json"])
    assert remote == {name: data for name, data in local.items() if name != "report.json"}
    removed = _records(remote["removed.jsonl.gz"])
    assert {r["duplicate_of"] for r in removed} >= {"fin.jsonl.gz:2", "gen.jsonl.gz:2"}  # planted copies
    # The report lists the files each run read (URLs here) and is otherwise the local one.
    assert [i.pop("paths") for i in remote_report["inputs"]] == [
        [f"{corpus_url}/fin.jsonl.gz"],
        [f"{corpus_url}/gen.jsonl.gz"],
    ]
    assert [len(i.pop("paths")) for i in local_report["inputs"]] == [1, 1] and remote_report == local_report

    # mix: the curated output in S3 -> a mix in S3, against local curated -> local mix
    cache_args = ["--cache", f"{bucket}/tokens"]  # a token cache in the bucket, shared by machines
    local_yaml = _mix_yaml(
        tmp_path, *(str(local_out / f"{s}.jsonl.gz") for s in ("fin", "gen")), str(tmp_path / "mix")
    )
    assert run_cli(monkeypatch, capsys, ["mix", str(local_yaml), "-q", "--no-cache"])[0] == 0
    fin, gen = (f"{bucket}/curated/{s}.jsonl.gz" for s in ("fin", "gen"))
    remote_yaml = _mix_yaml(tmp_path, fin, gen, f"{bucket}/mix")
    for machine in ("first", "second"):  # a cold, then a warm cache (fetched: a new local mirror)
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / machine))
        code, err = run_cli(monkeypatch, capsys, ["mix", str(remote_yaml), "-q", *cache_args, "--overwrite"])
        assert code == 0, err
        mixed = files_of(download(f"{bucket}/mix", tmp_path / "mix-s3"))
        local_mix = files_of(tmp_path / "mix")
        mixed_manifest = mixed.pop("manifest.json")
        manifest, local_manifest = json.loads(mixed_manifest), json.loads(local_mix.pop("manifest.json"))
        assert without_marker(mixed) == without_marker(local_mix)  # shards, source ids, val tokens + text
        assert manifest["fingerprint"] == local_manifest["fingerprint"]
        assert [s["paths"] for s in manifest["sources"]] == [[fin], [gen]]
        assert manifest["train"] == local_manifest["train"]
    assert f"token cache {bucket}/tokens: 2 of 2 input files read from it" in err

    # pretrain reads that mix through a checked local copy, made once
    from domainlm.mix.stage import stage_mix
    from domainlm.pretrain.inputs import load_run

    recipe, _, inputs = load_run("tiny_cpu", [f"data.mix={bucket}/mix", "data.seq_len=64"], tmp_path / "run")
    staged = inputs.mix_dir
    assert recipe.data.mix == f"{bucket}/mix" and inputs.manifest.fingerprint == manifest["fingerprint"]
    assert without_marker(files_of(staged)) == without_marker({**local_mix, "manifest.json": mixed_manifest})
    assert stage_mix(f"{bucket}/mix") == staged  # a second run copies nothing
    shard = manifest["train"]["shards"][0]["path"]
    damaged = tmp_path / "damaged"
    damaged.write_bytes(b"\0" * len(local_mix[shard]))
    upload(damaged, f"{bucket}/mix/{shard}")
    with pytest.raises(DataError, match=f"{bucket}/mix/{shard}: sha256 .* is not the manifest's"):
        stage_mix(f"{bucket}/mix", root=tmp_path / "stage")
    assert not (tmp_path / "stage" / manifest["fingerprint"][:16]).exists()


def test_tokenizer_train_writes_to_s3_the_local_bytes(tmp_path, corpus_dir, bucket, monkeypatch, capsys):
    argv = [
        "tokenizer",
        "train",
        "--corpus",
        f"fin={corpus_dir / 'fin.jsonl.gz'}",
        "--vocab-size",
        "400",
        "-q",
    ]
    assert run_cli(monkeypatch, capsys, [*argv, "--out", str(tmp_path / "tok")])[0] == 0
    code, err = run_cli(monkeypatch, capsys, [*argv, "--out", f"{bucket}/tok"])
    assert code == 0, err
    remote = files_of(download(f"{bucket}/tok", tmp_path / "tok-s3"))
    local = files_of(tmp_path / "tok")
    for files in (remote, local):
        files.pop("run.json")  # wall-clock time of the run
    assert without_marker(remote) == without_marker(local) and "tokenizer.json" in local
    # S3 corpus -> S3 output: the same tokenizer; the manifest names the corpus URL
    upload(corpus_dir / "fin.jsonl.gz", f"{bucket}/corpus/fin.jsonl.gz")
    argv[3] = f"fin={bucket}/corpus/fin.jsonl.gz"
    code, err = run_cli(monkeypatch, capsys, [*argv, "--out", f"{bucket}/tok-b"])
    assert code == 0, err
    from_s3 = files_of(download(f"{bucket}/tok-b", tmp_path / "tok-b"))
    from_s3.pop("run.json")
    manifest = from_s3.pop("manifest.json").decode().replace(f"{bucket}/corpus", str(corpus_dir))
    assert json.loads(manifest) == json.loads(local.pop("manifest.json"))
    assert without_marker(from_s3) == without_marker(local)
