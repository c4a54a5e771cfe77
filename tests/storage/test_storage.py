"""domainlm.storage without a server: URL rules, paths in configs, and the remote output protocol
over fsspec's in-memory filesystem (memory://), which behaves as a bucket without one."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from domainlm.config import resolve_cli_path
from domainlm.errors import ConfigError
from domainlm.mix.config import load_mix_config
from domainlm.outputs import MARKER_NAME, remove_tree
from domainlm.storage import filesystem, is_url, output_target
from domainlm.storage.output import remote_output_dir
from domainlm.storage.paths import RemotePath, as_path


def _tree(url: str) -> dict[str, bytes]:
    fs, root = filesystem(url)
    return {p[len(root) + 1 :]: fs.cat_file(p) for p in fs.find(root)}


def test_urls_are_not_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert is_url("s3://bucket/key") and is_url("memory://x") and not is_url("C:\\data") and not is_url("a/b")
    assert resolve_cli_path("s3://bucket/mix") == "s3://bucket/mix"
    assert resolve_cli_path("mix") == tmp_path / "mix"
    assert output_target("file:///srv/out") == Path("/srv/out") and output_target("gs://b/o") == "gs://b/o"
    assert str(as_path("memory://corpus/a.jsonl")) == "memory://corpus/a.jsonl"
    config = {
        "sources": {"fin": {"paths": ["s3://corpora/fin/"], "ratio": 1.0}},
        "seq_len": 64,
        "tokenizer": "gpt2",
        "out": "s3://work/mix",
    }
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "mix.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    loaded = load_mix_config(tmp_path / "sub" / "mix.yaml")  # YAML paths: relative to sub/, URLs as written
    assert loaded.sources["fin"].paths == ["s3://corpora/fin/"] and loaded.out == "s3://work/mix"


def test_remote_output_is_whole_or_absent():
    url = "memory://domainlm-test/out"
    with remote_output_dir(url, overwrite=False, command="mix", last=("manifest.json",)) as stage:
        (stage / "train").mkdir()
        (stage / "train" / "shard_00000.bin").write_bytes(b"\x01\x02")
        (stage / "manifest.json").write_text("{}")
        staged = stage
    assert not staged.exists()  # the local staging folder is gone
    files = _tree(url)
    assert sorted(files) == [MARKER_NAME, "manifest.json", "train/shard_00000.bin"]
    assert files["train/shard_00000.bin"] == b"\x01\x02"
    with pytest.raises(ConfigError, match="output already exists"):
        remote_output_dir(url, overwrite=False, command="mix", last=()).__enter__()
    failing = remote_output_dir(url, overwrite=True, command="mix", last=("manifest.json",))
    with pytest.raises(RuntimeError, match="killed"), failing as stage:  # a failed run changes nothing
        (stage / "manifest.json").write_text('{"new": 1}')
        raise RuntimeError("killed")
    assert _tree(url) == files
    with remote_output_dir(url, overwrite=True, command="mix", last=("manifest.json",)) as stage:
        (stage / "manifest.json").write_text('{"new": 1}')
    assert sorted(_tree(url)) == [MARKER_NAME, "manifest.json"]  # the old shard went with the old output
    remove_tree(url)  # the one deleter, for a marked prefix too
    assert _tree(url) == {}
    assert not RemotePath(url).exists()


def test_ids_from_a_url_folder_glob_and_file_match_the_local_copy(tmp_path):
    """Ids name files below the URL given, as below a local folder: the same ids from either."""
    from domainlm.corpus import CorpusReader

    local = tmp_path / "corpus"
    (local / "sub").mkdir(parents=True)
    fs, _ = filesystem("memory://ids-test")
    for name in ("a.jsonl", "sub/a.jsonl", "sub/b.jsonl"):
        data = f'{{"text": "{name} one"}}\n{{"text": "{name} two"}}\n'.encode()
        (local / name).write_bytes(data)
        fs.pipe_file(f"/ids-test/corpus/{name}", data)
    url = "memory://ids-test/corpus"
    try:
        for remote_spec, local_spec in [
            ([url], [local]),
            ([f"{url}/"], [local]),
            ([f"{url}/s*/*.jsonl"], [f"{local}/s*/*.jsonl"]),
            ([f"{url}/a.jsonl", f"{url}/sub/a.jsonl"], [local / "a.jsonl", local / "sub" / "a.jsonl"]),
        ]:
            ids = [d.doc_id for d in CorpusReader(remote_spec)]
            assert ids == [d.doc_id for d in CorpusReader(local_spec)] and ids
        assert [d.doc_id for d in CorpusReader(url)][::2] == ["a.jsonl:1", "sub/a.jsonl:1", "sub/b.jsonl:1"]
        assert CorpusReader([f"{url}/a.jsonl", f"{url}/sub/a.jsonl"]).names == ["a.jsonl", "sub/a.jsonl"]
    finally:
        fs.rm("/ids-test", recursive=True)
