"""Bad object-storage input: one `error:` line naming what failed and the fix, exit 2, nothing written.
Against the moto server of conftest.py (a bucket that does not exist, no credentials) or a port where
nothing listens (an unreachable endpoint)."""

from __future__ import annotations

import socket

import pytest

from domainlm.errors import ConfigError
from domainlm.outputs import MARKER_NAME
from domainlm.storage import filesystem, parse_storage_options
from domainlm.storage.output import check_remote_output, remote_output_dir, remove_remote_tree
from tests.storage.conftest import upload
from tests.storage.test_s3_outputs import run_cli


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # free once closed: nothing listens there


def _refused(code: int, err: str, *needles: str) -> str:
    assert code == 2, err[-2000:]
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _keys(bucket: str) -> list[str]:
    fs, path = filesystem(bucket)
    return sorted(fs.find(path))


@pytest.mark.parametrize("side", ["input", "output"])
def test_a_bucket_that_does_not_exist(side, tmp_path, corpus_dir, bucket, monkeypatch, capsys):
    missing = f"{bucket}-missing"
    corpus = f"{missing}/fin.jsonl.gz" if side == "input" else str(corpus_dir / "fin.jsonl.gz")
    out = tmp_path / "out" if side == "input" else f"{missing}/out"
    code, err = run_cli(monkeypatch, capsys, ["curate", corpus, "--out", str(out), "-q"])
    _refused(code, err, f"bucket '{missing[5:]}' does not exist", "create it first or fix the URL")
    assert not (tmp_path / "out").exists()


def test_an_unreachable_endpoint(tmp_path, corpus_dir, bucket, monkeypatch, capsys):
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    argv = ["curate", f"{bucket}/fin.jsonl.gz", "--out", str(tmp_path / "out"), "-q"]
    code, err = run_cli(monkeypatch, capsys, [*argv, "--storage-option", f"endpoint_url={endpoint}"])
    _refused(code, err, f"cannot reach the storage endpoint {endpoint}", "endpoint_url=URL")
    assert not (tmp_path / "out").exists()


def test_missing_credentials(tmp_path, corpus_dir, bucket, monkeypatch, capsys):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    argv = ["curate", str(corpus_dir / "fin.jsonl.gz"), "--out", f"{bucket}/out", "-q"]
    code, err = run_cli(monkeypatch, capsys, argv)
    _refused(code, err, "no credentials found for s3://", "AWS_ACCESS_KEY_ID", "--storage-option key=")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    assert _keys(bucket) == []


def test_overwrite_refuses_a_prefix_domainlm_did_not_write(tmp_path, corpus_dir, bucket, monkeypatch, capsys):
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "notes.txt").write_text("someone's data")
    upload(tmp_path / "theirs", f"{bucket}/theirs")
    argv = ["curate", str(corpus_dir / "fin.jsonl.gz"), "--out", f"{bucket}/theirs", "-q"]
    _refused(*run_cli(monkeypatch, capsys, argv), "output already exists", "--overwrite")
    _refused(
        *run_cli(monkeypatch, capsys, [*argv, "--overwrite"]), f"no {MARKER_NAME}", "will not replace it"
    )
    with pytest.raises(ConfigError, match="not written by domainlm"):
        remove_remote_tree(f"{bucket}/theirs")
    with pytest.raises(ConfigError, match="is a bucket root"):
        check_remote_output(bucket, overwrite=False)
    assert _keys(bucket) == [f"{bucket[5:]}/theirs/notes.txt"]


def test_a_killed_upload_leaves_only_a_marked_temp_prefix_that_the_next_run_cleans(tmp_path, bucket):
    # What a run killed mid-upload leaves: `<out>.tmp-<id>/` with the marker and part of the data.
    dead = tmp_path / "dead"
    dead.mkdir()
    (dead / MARKER_NAME).write_text('{"command": "curate"}')
    (dead / "fin.jsonl.gz").write_bytes(b"half")
    upload(dead, f"{bucket}/out.tmp-dead")
    (dead / MARKER_NAME).unlink()
    upload(dead, f"{bucket}/out.tmp-theirs")  # no marker: not ours, left alone
    assert _keys(bucket)[0].endswith("out.tmp-dead/.domainlm-output.json")
    with remote_output_dir(
        f"{bucket}/out", overwrite=False, command="curate", last=("report.json",)
    ) as stage:
        (stage / "fin.jsonl.gz").write_bytes(b"whole")
        (stage / "report.json").write_text("{}")
    keys = [k.split("/", 1)[1] for k in _keys(bucket)]  # without the bucket name
    assert [k for k in keys if "tmp-" in k] == ["out.tmp-theirs/fin.jsonl.gz"]
    assert sorted(k for k in keys if k.startswith("out/")) == [
        f"out/{n}" for n in (MARKER_NAME, "fin.jsonl.gz", "report.json")
    ]


def test_storage_option_values():
    assert parse_storage_options(
        ["anon=true", "endpoint_url=http://h:9000", "client_kwargs.region_name=eu"]
    ) == {
        "anon": True,
        "endpoint_url": "http://h:9000",
        "client_kwargs": {"region_name": "eu"},
    }
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_storage_options(["endpoint_url"])
