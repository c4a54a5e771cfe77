"""Token cache: hits, misses, invalidation, byte-identical re-mixes, corrupt entries, concurrency, list/prune."""

import gzip
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from typer.testing import CliRunner

from domainlm.assets import reference_tokenizer
from domainlm.cli import cache as cache_cli
from domainlm.errors import ConfigError, DataError
from domainlm.mix import sources as sources_module
from domainlm.mix.build import build_mix
from domainlm.mix.cache import TokenCache, default_cache_dir, parse_age
from domainlm.mix.config import MixConfig
from domainlm.mix.encode import BatchEncoder, load_mix_tokenizer
from domainlm.outputs import MARKER_NAME
from tests.mix.conftest import GPT2, small_config

REPO = Path(__file__).resolve().parents[2]
KEY = r"[0-9a-f]{64}"


def _files(root: Path) -> dict[str, bytes]:
    """Every file of a mix directory but the output marker (it records when it was written)."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MARKER_NAME
    }


@pytest.fixture
def corpora(small_corpora, tmp_path) -> Path:
    """A private copy of the small corpora (tests edit and move files)."""
    return Path(shutil.copytree(small_corpora, tmp_path / "corpora"))


@pytest.fixture
def encodes(monkeypatch) -> list[str]:
    """The files tokenized (cache misses and uncached reads), in order."""
    calls: list[str] = []
    real = sources_module._encode_file

    def counting(reader, *args, **kwargs):
        calls.append(Path(reader.files[0]).name)
        return real(reader, *args, **kwargs)

    monkeypatch.setattr(sources_module, "_encode_file", counting)
    return calls


def _with(config: MixConfig, **sources) -> MixConfig:
    """`config` with source fields replaced: _with(c, fin={"ratio": 0.5}, gen={"ratio": 0.5})."""
    data = config.model_dump()
    for name, fields in sources.items():
        data["sources"][name].update(fields)
    return MixConfig.model_validate(data)


def _mix_twice(config: MixConfig, cache: Path) -> tuple[dict, dict]:
    """(files with the cache, files of a --no-cache run of the same config at the same --out)."""
    build_mix(config, overwrite=True, quiet=True, cache=cache)
    cached = _files(Path(config.out))
    build_mix(config, overwrite=True, quiet=True, cache=False)
    return cached, _files(Path(config.out))


def test_cold_warm_and_uncached_runs_write_the_same_bytes(corpora, tmp_path, encodes):
    cache = tmp_path / "cache"
    base = small_config(corpora, tmp_path / "out")
    cold, uncached = _mix_twice(base, cache)
    assert cold == uncached and "val/fin.jsonl.gz" in cold and "train/shard_00001.bin" in cold
    assert encodes == ["fin.jsonl", "gen.jsonl"] * 2  # the cold run and the --no-cache run
    variants = [
        _with(base, fin={"ratio": 0.5}, gen={"ratio": 0.5}),
        small_config(corpora, tmp_path / "out", seq_len=32),
        small_config(corpora, tmp_path / "out", seed=1),
    ]
    for config in [base, *variants]:
        encodes.clear()
        warm, uncached = _mix_twice(config, cache)
        assert encodes == ["fin.jsonl", "gen.jsonl"]  # only the --no-cache run read the corpus
        assert warm == uncached
    assert warm != cold  # the seed changed the held-out choice and the shuffle
    assert len(TokenCache(cache).entries()) == 2


def test_entry_holds_what_batch_encoder_produces(corpora, tmp_path):
    result = build_mix(small_config(corpora, tmp_path / "out"), quiet=True, cache=tmp_path / "cache")
    texts = [json.loads(line)["text"] for line in (corpora / "gen.jsonl").read_text().splitlines()]
    tokens, lengths = BatchEncoder(load_mix_tokenizer(GPT2)).encode(texts)
    entry = next(e for e in TokenCache(tmp_path / "cache").entries() if e.file.endswith("gen.jsonl"))
    folder = tmp_path / "cache" / entry.key
    assert np.array_equal(np.fromfile(folder / "tokens.bin", dtype=np.uint16), tokens)
    assert np.array_equal(np.load(folder / "ends.npy"), np.cumsum(lengths))
    assert np.array_equal(np.load(folder / "bytes.npy"), [len(t.encode()) for t in texts])
    text = (folder / "text.zst").read_bytes()
    frames = np.load(folder / "frames.npy")  # (first document, offset): whole documents per frame
    assert frames[0].tolist() == [0, 0] and len(frames) > 2 and np.all(np.diff(frames, axis=0) > 0)
    bounds = [*frames[:, 1].tolist(), len(text)]
    pieces = [
        zstandard.ZstdDecompressor().decompress(text[a:b])
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    assert b"".join(pieces) == "".join(texts).encode()
    first = frames[1, 0]
    assert pieces[0] == "".join(texts[:first]).encode()
    with zstandard.ZstdDecompressor().stream_reader(open(folder / "ids.zst", "rb")) as handle:
        assert handle.read().decode().splitlines()[:2] == ['":1"', '":2"']
    gen = result.sources[1]
    assert (entry.documents, entry.tokens) == (40, gen.tokens + gen.val_tokens) == (40, len(tokens))


def test_changed_file_is_a_miss_never_a_stale_hit(corpora, tmp_path, encodes):
    cache, config = tmp_path / "cache", small_config(corpora, tmp_path / "out")
    build_mix(config, quiet=True, cache=cache)
    lines = (corpora / "gen.jsonl").read_text().splitlines(keepends=True)
    (corpora / "gen.jsonl").write_text("".join(lines[:-1]).replace("the", "a"))
    encodes.clear()
    warm, uncached = _mix_twice(config, cache)
    assert encodes == ["gen.jsonl", "fin.jsonl", "gen.jsonl"]  # the edit is a miss; fin a hit
    assert warm == uncached
    assert len(TokenCache(cache).entries()) == 3


def test_tokenizer_or_eos_change_is_a_miss(corpora, tmp_path, encodes):
    cache = tmp_path / "cache"
    build_mix(small_config(corpora, tmp_path / "out"), quiet=True, cache=cache)
    bert = small_config(corpora, tmp_path / "out", tokenizer=str(reference_tokenizer("bert-base-uncased")))
    for config in (
        bert.model_copy(update={"eos_token": "[SEP]"}),
        small_config(corpora, tmp_path / "out", eos_token="!"),
    ):
        encodes.clear()
        warm, uncached = _mix_twice(config, cache)
        assert encodes == ["fin.jsonl", "gen.jsonl"] * 2  # missed, then the --no-cache run
        assert warm == uncached
    assert len(TokenCache(cache).entries()) == 6


def test_text_field_change_is_a_miss(tmp_path, encodes):
    folder = tmp_path / "c"
    folder.mkdir()
    records = [
        {"text": f"plain text number {i}. " * 40, "body": f"the BODY field {i}! " * 50} for i in range(30)
    ]
    (folder / "docs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    data = small_config(tmp_path, tmp_path / "out").model_dump()
    data["sources"] = {"docs": {"paths": [str(folder / "docs.jsonl")], "ratio": 1.0}}
    text, body = (
        MixConfig.model_validate(data),
        _with(MixConfig.model_validate(data), docs={"text_field": "body"}),
    )
    text_result = build_mix(text, quiet=True, cache=tmp_path / "cache")
    encodes.clear()
    body_result = build_mix(body, overwrite=True, quiet=True, cache=tmp_path / "cache")
    assert encodes == ["docs.jsonl"]
    assert body_result.sources[0].text_bytes == sum(len(r["body"]) for r in records)
    assert text_result.sources[0].text_bytes == sum(len(r["text"]) for r in records)


def _every_format(folder: Path) -> Path:
    """One source over .txt, .jsonl.zst (with a malformed line) and .parquet files."""
    folder.mkdir()
    words = "The lease was void because the tenant never signed it. "
    (folder / "a.txt").write_text(words * 300)
    lines = [json.dumps({"text": words * 100}), "{not json", json.dumps({"text": words * 120})]
    (folder / "b.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress("\n".join(lines).encode()))
    pq.write_table(pa.table({"text": [words * 90, words * 110, words * 70]}), folder / "c.parquet")
    return folder


def test_moved_files_hit_and_report_their_new_paths(tmp_path, encodes):
    def config(folder):
        data = small_config(tmp_path, tmp_path / "out", val_fraction=0.34).model_dump()
        data["sources"] = {"legal": {"paths": [str(folder)], "ratio": 1.0}}
        return MixConfig.model_validate(data)

    first = _every_format(tmp_path / "legal")
    build_mix(config(first), quiet=True, cache=tmp_path / "cache")
    moved = first.rename(tmp_path / "moved")
    encodes.clear()
    warm, uncached = _mix_twice(config(moved), tmp_path / "cache")
    assert encodes == ["a.txt", "b.jsonl.zst", "c.parquet"]  # only the --no-cache run
    assert warm == uncached
    read = json.loads(warm["manifest.json"])["sources"][0]["read"]
    assert read["malformed_lines"] == 1 and read["problems"] == [
        f"{moved / 'b.jsonl.zst'}:2: malformed JSON (Expecting property name enclosed in double quotes)"
    ]
    with gzip.open(tmp_path / "out" / "val" / "legal.jsonl.gz", "rt") as handle:
        ids = [json.loads(line)["id"] for line in handle]
    assert ids and all(i.split(":")[0].split("#")[0] in {"a.txt", "b.jsonl.zst", "c.parquet"} for i in ids)


def test_dry_run_fills_the_cache(corpora, tmp_path, encodes):
    config = small_config(corpora, tmp_path / "out")
    dry = build_mix(config, dry_run=True, quiet=True, cache=tmp_path / "cache")
    assert not (tmp_path / "out").exists() and len(TokenCache(tmp_path / "cache").entries()) == 2
    encodes.clear()
    real = build_mix(config, quiet=True, cache=tmp_path / "cache")
    assert encodes == [] and real.allocations == dry.allocations


def test_strict_run_fails_on_a_cached_skipped_line_as_uncached(corpora, tmp_path):
    with open(corpora / "fin.jsonl", "a") as handle:
        handle.write("{broken\n")
    build_mix(small_config(corpora, tmp_path / "out"), quiet=True, cache=tmp_path / "cache")
    for cache in (tmp_path / "cache", False):
        with pytest.raises(DataError, match=r"fin\.jsonl:21: malformed JSON .*run without --strict"):
            build_mix(small_config(corpora, tmp_path / "o2"), strict=True, quiet=True, cache=cache)
    assert not (tmp_path / "o2").exists()


def _damage(entry: Path, how: str) -> None:
    if how == "flipped byte":
        data = bytearray((entry / "tokens.bin").read_bytes())
        data[100] ^= 1
        (entry / "tokens.bin").write_bytes(bytes(data))
    elif how == "truncated":
        (entry / "text.zst").write_bytes((entry / "text.zst").read_bytes()[:-10])
    elif how == "meta":
        (entry / "meta.json").write_text("{not json")
    else:
        (entry / "ends.npy").unlink()


@pytest.mark.parametrize(
    ("how", "what"),
    [
        ("flipped byte", "tokens.bin does not match its checksum in meta.json"),
        ("truncated", r"text.zst has \d+ bytes, meta.json says \d+"),
        ("meta", "meta.json is not valid JSON: Expecting property name enclosed in double quotes at line 1"),
        ("missing", "ends.npy is missing"),
    ],
)
def test_corrupt_entry_is_one_error_and_writes_nothing(corpora, tmp_path, how, what):
    cache = TokenCache(tmp_path / "cache")
    build_mix(small_config(corpora, None), dry_run=True, quiet=True, cache=cache.root)
    entry = next(e for e in cache.entries() if e.file.endswith("gen.jsonl"))
    _damage(cache.root / entry.key, how)
    message = (
        rf"token cache entry {cache.root}/{entry.key} is corrupt \({what}\); delete it with "
        rf"`domainlm cache prune --cache {cache.root} --key {entry.key}` or run mix with --no-cache"
    )
    with pytest.raises(DataError, match=message):
        build_mix(small_config(corpora, tmp_path / "out"), quiet=True, cache=cache.root)
    assert not (tmp_path / "out").exists() and sorted(p.name for p in tmp_path.iterdir()) == [
        "cache",
        "corpora",
    ]
    cache.prune(key=entry.key[:12])
    build_mix(small_config(corpora, tmp_path / "out"), quiet=True, cache=cache.root)
    assert len(cache.entries()) == 2


def _mix_cli(*args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "domainlm", "mix", *map(str, args), "--quiet"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs,
    )  # fmt: skip


def _yaml(corpora: Path, tmp_path: Path) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(
        f"sources:\n  fin: {{paths: {corpora / 'fin.jsonl'}, ratio: 0.6, max_repeats: 3}}\n"
        f"  gen: {{paths: {corpora / 'gen.jsonl'}, ratio: 0.4}}\nseq_len: 64\nval_fraction: 0.2\n"
        f"tokenizer: {GPT2}\n"
    )
    return path


def test_corrupt_entry_exits_2_with_one_line(corpora, tmp_path):
    cache = TokenCache(tmp_path / "cache")
    build_mix(small_config(corpora, None), dry_run=True, quiet=True, cache=cache.root)
    _damage(cache.root / cache.entries()[0].key, "flipped byte")
    proc = _mix_cli(_yaml(corpora, tmp_path), "--out", tmp_path / "out", "--cache", cache.root)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 2 and "Traceback" not in stderr
    assert stderr.startswith("error: token cache entry ") and stderr.count("\n") == 1
    assert "--no-cache" in stderr and not (tmp_path / "out").exists()


def test_two_mixes_sharing_a_cache_at_once(corpora, tmp_path):
    config = _yaml(corpora, tmp_path)
    procs = [_mix_cli(config, "--out", tmp_path / f"out{i}", "--cache", tmp_path / "cache") for i in (1, 2)]
    for proc in procs:
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
    first, second = (_files(tmp_path / f"out{i}") for i in (1, 2))
    del first["manifest.json"], second["manifest.json"]  # they differ in `out` only
    assert first == second
    cache = TokenCache(tmp_path / "cache")
    assert len(cache.entries()) == 2 and list(cache.root.glob(".tmp-*")) == []


def test_racing_writers_of_one_key_keep_one_entry(tmp_path):
    cache = TokenCache(tmp_path / "cache")
    cache.prepare()
    inputs = {"content_sha256": "0" * 64}
    writers = [cache.writer("a" * 64, inputs, tmp_path / "f.jsonl", np.dtype(np.uint16)) for _ in range(2)]
    for value, writer in enumerate(writers):
        writer.add(
            np.array([value, 9], dtype=np.uint16), np.array([2]), [b"x"], [f"{tmp_path / 'f.jsonl'}:1"]
        )
    final = [w.commit({"files": 1}) for w in writers]
    assert final[0] == final[1] == cache.root / ("a" * 64)
    assert [p.name for p in cache.root.iterdir() if p.name != MARKER_NAME] == ["a" * 64]
    entry = cache.open("a" * 64, inputs)
    assert next(entry.batches(with_text=True)).tokens.read(0, 2).tolist() == [0, 9]  # the first rename won


def test_default_location_follows_xdg_then_home(corpora, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "domainlm" / "tokens"
    build_mix(small_config(corpora, None), dry_run=True, quiet=True)
    assert json.loads((default_cache_dir() / MARKER_NAME).read_text())["command"] == "cache"
    assert len(TokenCache(default_cache_dir()).entries()) == 2
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for value in ("", "relative/dir"):
        monkeypatch.setenv("XDG_CACHE_HOME", value)
        assert default_cache_dir() == tmp_path / "home" / ".cache" / "domainlm" / "tokens"


def test_a_folder_that_is_not_a_cache_is_refused(corpora, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(
        ConfigError, match=r"--cache .*mine: not a domainlm token cache .* or run mix with --no-cache"
    ):
        build_mix(small_config(corpora, tmp_path / "out"), quiet=True, cache=folder)
    assert [p.name for p in folder.iterdir()] == ["notes.txt"] and not (tmp_path / "out").exists()


def test_cache_and_no_cache_flags_conflict(corpora, tmp_path):
    from domainlm.cli import mix as mix_cli

    with pytest.raises(ConfigError, match="--cache .* and --no-cache: pass one of them, not both"):
        mix_cli.mix(str(_yaml(corpora, tmp_path)), cache=str(tmp_path / "c"), no_cache=True, quiet=True)


def _cache_app():
    import typer

    app = typer.Typer()
    cache_cli.register(app)

    @app.callback()
    def _root() -> None:
        pass

    return app


def _cli(*args) -> dict:
    result = CliRunner().invoke(_cache_app(), ["cache", *map(str, args), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_list_and_prune(corpora, tmp_path):
    root = tmp_path / "cache"
    result = build_mix(small_config(corpora, None), dry_run=True, quiet=True, cache=root)
    listing = _cli("list", "--cache", root)
    assert [Path(e["file"]).name for e in listing["entries"]] == ["fin.jsonl", "gen.jsonl"]
    totals = listing["totals"]
    assert totals["documents"] == 60 == sum(s.documents + s.val_documents for s in result.sources)
    assert totals["tokens"] == sum(s.tokens + s.val_tokens for s in result.sources)
    assert totals["disk_bytes"] == sum(p.stat().st_size for p in root.glob("*/*"))
    assert _cli("prune", "--cache", root, "--older-than", "30d")["removed"] == []
    old = root / listing["entries"][1]["key"] / "meta.json"
    meta = json.loads(old.read_text())
    old.write_text(json.dumps(dict(meta, last_used="2020-01-01T00:00:00+00:00")))
    removed = _cli("prune", "--cache", root, "--older-than", "30d")["removed"]
    assert [e["key"] for e in removed] == [meta["key"]]
    assert _cli("prune", "--cache", root, "--key", listing["entries"][0]["key"][:8])["totals"]["entries"] == 1
    assert _cli("list", "--cache", root)["entries"] == [] and (root / MARKER_NAME).is_file()
    table = CliRunner().invoke(_cache_app(), ["cache", "list", "--cache", str(root)])
    assert "0 entries, 0 documents" in table.stdout


def test_prune_removes_only_abandoned_temp_dirs(tmp_path):
    from domainlm.mix.cache_entry import lock_dir

    cache = TokenCache(tmp_path / "cache")
    cache.prepare()
    abandoned, building = cache.root / ".tmp-abandoned", cache.root / ".tmp-building"
    for folder in (abandoned, building):
        folder.mkdir()
        os.utime(folder, (time.time() - 3600, time.time() - 3600))
    fd = lock_dir(building)
    try:
        assert cache.prune(everything=True) == []
        assert not abandoned.exists() and building.exists()
    finally:
        os.close(fd)


def test_prune_arguments_are_checked(tmp_path):
    cache = TokenCache(tmp_path / "cache")
    cache.prepare()
    with pytest.raises(ConfigError, match="pass exactly one of --older-than AGE .*, --all or --key KEY"):
        cache.prune()
    with pytest.raises(ConfigError, match="pass exactly one of"):
        cache.prune(everything=True, key="abcdef")
    with pytest.raises(
        ConfigError, match=r"--key abcdef: no entry in .* match\(es\) it; `domainlm cache list"
    ):
        cache.prune(key="abcdef")
    with pytest.raises(ConfigError, match=r"--older-than '30 days': expected a number and a unit s/m/h/d/w"):
        parse_age("30 days")
    assert parse_age("30d") == 30 * 86400 and parse_age("1.5h") == 5400


def test_digests_read_once_give_the_same_fingerprints(tmp_path):
    from domainlm.corpus.fingerprint import corpus_fingerprint
    from domainlm.mix.cache import content_sha256, file_digests
    from domainlm.outputs import file_sha256, fingerprint_files

    folder = _every_format(tmp_path / "legal")
    dataset = tmp_path / "ds"
    (dataset / "train").mkdir(parents=True)
    (dataset / "dataset_dict.json").write_text('{"splits": ["train"]}')
    (dataset / "train" / "data.arrow").write_bytes(b"\0" * 100)
    files = [*sorted(folder.iterdir()), dataset]
    digests = file_digests(files)
    assert len(digests) == 5 and digests[folder / "a.txt"] == file_sha256(folder / "a.txt")
    assert corpus_fingerprint(files, digests) == corpus_fingerprint(files)
    assert (
        content_sha256(dataset, digests)
        == content_sha256(dataset)
        == fingerprint_files([dataset / "dataset_dict.json", dataset / "train" / "data.arrow"])
    )


def test_mix_cli_says_what_came_from_the_cache(corpora, tmp_path):
    import typer

    from domainlm.cli import mix as mix_cli

    app = typer.Typer()
    mix_cli.register(app)
    app.callback()(lambda: None)
    args = ["mix", str(_yaml(corpora, tmp_path)), "--dry-run", "--cache", str(tmp_path / "cache")]
    first, second = (CliRunner().invoke(app, args) for _ in range(2))
    assert first.exit_code == second.exit_code == 0, first.output
    assert f"token cache {tmp_path / 'cache'}: 0 of 2 input files read from it, 2 tokenized" in first.stderr
    assert "2 of 2 input files read from it, 0 tokenized" in second.stderr
    uncached = CliRunner().invoke(app, [*args[:3], "--no-cache"])
    assert uncached.exit_code == 0 and "token cache" not in uncached.stderr


def test_a_file_edited_while_tokenized_is_not_cached(corpora, tmp_path, monkeypatch):
    real = sources_module._encode_file

    def edit_gen_meanwhile(reader, *args, **kwargs):
        stats = real(reader, *args, **kwargs)
        if reader.files[0].name == "gen.jsonl":
            with open(reader.files[0], "a") as handle:
                handle.write(json.dumps({"text": "appended while the mix read the file"}) + "\n")
        return stats

    monkeypatch.setattr(sources_module, "_encode_file", edit_gen_meanwhile)
    build_mix(small_config(corpora, tmp_path / "out"), quiet=True, cache=tmp_path / "cache")
    assert [Path(e.file).name for e in TokenCache(tmp_path / "cache").entries()] == ["fin.jsonl"]


def test_warm_copy_without_copy_file_range_is_the_same(corpora, tmp_path, monkeypatch):
    import errno

    config = small_config(corpora, tmp_path / "out")
    build_mix(config, dry_run=True, quiet=True, cache=tmp_path / "cache")

    def unsupported(*args):
        raise OSError(errno.EXDEV, "cross-device copy")

    monkeypatch.setattr(os, "copy_file_range", unsupported)  # another filesystem, an old kernel
    warm, uncached = _mix_twice(config, tmp_path / "cache")
    assert warm == uncached
