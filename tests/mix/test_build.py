import gzip
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from domainlm.errors import DataError
from domainlm.mix import build as build_module
from domainlm.mix.build import build_mix
from domainlm.mix.dataset import open_mix, train_dataset
from domainlm.mix.encode import BatchEncoder
from domainlm.mix.sources import HeldOut
from domainlm.outputs import MARKER_NAME, file_sha256
from domainlm.tokenizer.load import load_tokenizer
from tests.mix.conftest import GPT2, small_config


def _files(root):
    """Every file's bytes, but the output marker (it records when the mix was written)."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != MARKER_NAME)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in files}


def test_finance_51_49_realized_within_0_1_percent(finance_result):
    manifest = open_mix(finance_result.out)
    total = manifest.train.num_sequences
    assert total > 1000  # enough sequences that one sequence is < 0.1% of the mix
    for source in manifest.sources:
        assert source.realized_ratio == pytest.approx(source.tokens_taken / (total * manifest.seq_len))
        assert abs(source.realized_ratio - source.target_ratio) <= 0.001
    finance, general = manifest.sources
    assert finance.repeats == 4.0  # `all` is bound by finance at its max_repeats
    assert general.repeats < 1
    assert sum(s.tokens_taken for s in manifest.sources) == manifest.train.num_tokens


def test_manifest_checksums_and_sizes(finance_result):
    root = finance_result.out
    manifest = open_mix(root)
    assert (manifest.format, manifest.dtype, manifest.vocab_size, manifest.eos_token_id) == (
        "domainlm.mix/v1", "uint16", 50257, 50256,
    )  # fmt: skip
    assert manifest.tokenizer.fingerprint == load_tokenizer(GPT2).fingerprint
    assert (
        manifest.eos_token == manifest.tokenizer.eos_token == "<|endoftext|>"
    )  # pretrain loads it the same way
    for shard in manifest.train.shards:
        path = root / shard.path
        assert file_sha256(path) == shard.sha256
        assert path.stat().st_size == shard.num_sequences * manifest.seq_len * 2
    for source in manifest.sources:
        assert (root / source.val.path).stat().st_size == source.val.sequences * manifest.seq_len * 2
        assert source.val.sequences == source.val.tokens // manifest.seq_len
        assert len(source.fingerprint) == 64
    assert not (root / ".work").exists()
    assert manifest.config["seq_len"] == manifest.seq_len


def _source_sequences(config, name):
    """Recompute a source's training sequences from its text: tokens of kept documents, cut by seq_len."""
    loaded = load_tokenizer(GPT2)
    source = config.sources[name]
    lines = Path(source.paths[0]).read_text(encoding="utf-8").splitlines()
    texts = [json.loads(line)["text"] for line in lines]
    held = HeldOut(config.val_fraction, config.seed, name)
    kept = [t for i, t in enumerate(texts) if not held(i)]
    tokens, _ = BatchEncoder(loaded).encode(kept)
    usable = len(tokens) // config.seq_len * config.seq_len
    return [row.tobytes() for row in tokens[:usable].reshape(-1, config.seq_len)]


def test_every_sequence_comes_from_its_source_with_the_allocated_repeats(small_corpora, tmp_path):
    config = small_config(small_corpora, tmp_path / "out")
    result = build_mix(config, quiet=True)
    counts = Counter(row.numpy().astype(np.uint16).tobytes() for row in train_dataset(result.out))
    for alloc in result.allocations:
        expected = _source_sequences(config, alloc.name)
        assert len(expected) == alloc.available_sequences
        seen = [counts[row] for row in expected]
        full, partial = divmod(alloc.sequences, alloc.available_sequences)
        # fin: 2.70 repeats -> every sequence twice, a seeded 70% of them a third time; gen: once.
        assert sorted(set(seen)) == sorted({full, full + 1} if partial else {full})
        assert sum(seen) == alloc.sequences
        assert sum(1 for c in seen if c == full + 1) == partial
    assert sum(counts.values()) == sum(a.sequences for a in result.allocations)
    assert result.allocations[0].repeats == pytest.approx(1108 / 410)


def test_val_files_hold_the_held_out_documents(small_corpora, tmp_path):
    result = build_mix(small_config(small_corpora, tmp_path / "out"), quiet=True)
    manifest = open_mix(result.out)
    encoder = BatchEncoder(load_tokenizer(GPT2))
    for source in manifest.sources:
        with gzip.open(result.out / source.val.text_path, "rt", encoding="utf-8") as handle:
            records = [json.loads(line) for line in handle]
        assert len(records) == source.val.documents == 4 if source.name == "fin" else 8  # 20% of 20 / 40
        assert all(
            r["source"] == source.name and r["id"].startswith(f"{source.name}.jsonl:") for r in records
        )
        assert sum(len(r["text"].encode("utf-8")) for r in records) == source.val.bytes
        tokens, _ = encoder.encode([r["text"] for r in records])
        assert len(tokens) == source.val.tokens
        packed = np.fromfile(result.out / source.val.path, dtype=np.uint16)
        assert np.array_equal(packed, tokens[: source.val.sequences * manifest.seq_len])


def test_same_seed_is_byte_identical_other_seed_differs(small_corpora, tmp_path):
    out = tmp_path / "out"
    build_mix(small_config(small_corpora, out), quiet=True)
    first = _files(out)
    build_mix(small_config(small_corpora, out), overwrite=True, quiet=True)
    assert _files(out) == first
    assert "train/shard_00001.bin" in first  # shard_tokens splits it into two shards
    build_mix(small_config(small_corpora, out, seed=1), overwrite=True, quiet=True)
    other = _files(out)
    assert other["train/shard_00000.bin"] != first["train/shard_00000.bin"]
    assert (
        json.loads(other["manifest.json"])["fingerprint"] != json.loads(first["manifest.json"])["fingerprint"]
    )


def test_dry_run_counts_without_writing(small_corpora, tmp_path):
    out = tmp_path / "out"
    dry = build_mix(small_config(small_corpora, out), dry_run=True, quiet=True)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    real = build_mix(small_config(small_corpora, out), quiet=True)
    assert dry.allocations == real.allocations
    assert dry.manifest is None and dry.out is None


def test_too_small_source_fails_before_writing(small_corpora, tmp_path):
    config = small_config(small_corpora, tmp_path / "out", total_tokens="200K")
    with pytest.raises(
        DataError,
        match=r"source 'fin' has .* tokens missing; add at least .* tokens of data, lower its ratio .*fin.max_repeats >= 4.574",
    ):
        build_mix(config, quiet=True)
    assert list(tmp_path.iterdir()) == []  # no output, no temp dir


def test_existing_output_needs_overwrite(small_corpora, tmp_path):
    from domainlm.errors import ConfigError

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")  # an empty folder may be used; a full one may not
    with pytest.raises(ConfigError, match="already exists; choose another --out or pass --overwrite"):
        build_mix(small_config(small_corpora, tmp_path / "out"), quiet=True)


def test_exception_midway_leaves_no_output_and_rerun_is_clean(small_corpora, tmp_path, monkeypatch):
    real_writer = build_module.write_train_shards

    def crash_after_writing(out_dir, *args, **kwargs):
        real_writer(out_dir, *args, **kwargs)
        assert (out_dir / "train" / "shard_00000.bin").is_file()
        raise RuntimeError("injected crash")

    monkeypatch.setattr(build_module, "write_train_shards", crash_after_writing)
    with pytest.raises(RuntimeError, match="injected crash"):
        build_mix(small_config(small_corpora, tmp_path / "out"), quiet=True)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    result = build_mix(small_config(small_corpora, tmp_path / "out"), quiet=True)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert len(train_dataset(result.out)) == sum(a.sequences for a in result.allocations)
