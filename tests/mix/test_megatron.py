"""`domainlm export megatron`: every exported sequence read back through megatron-core's own readers.

megatron-core (a dev extra) is imported for real: IndexedDataset reads each .bin/.idx pair, its
get_blend_from_list parses the data-args files, and its GPTDataset builds the train and per-source
validation datasets from per_split_data_args.json, all on CPU.
"""

import errno
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from domainlm.cli import export as export_cli
from domainlm.errors import ConfigError, DataError
from domainlm.mix import megatron
from domainlm.mix.build import build_mix
from domainlm.mix.dataset import train_dataset, val_datasets
from domainlm.mix.manifest import open_mix
from domainlm.mix.megatron import export_megatron, megatron_dtype, write_idx
from tests.mix.conftest import small_config
from tests.mix.test_phases import phased_config

with warnings.catch_warnings():  # "Transformer Engine and Apex are not installed": fine for reading data
    warnings.simplefilter("ignore")
    from megatron.core.datasets.indexed_dataset import DType, IndexedDataset
    from megatron.core.datasets.utils import get_blend_from_list

SEQ_LEN = 64  # small_config's
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mix(small_corpora, tmp_path_factory) -> Path:
    """The small fin/gen mix cut into 300-sequence shards, so the export has several train prefixes."""
    out = tmp_path_factory.mktemp("mix") / "mix"
    build_mix(small_config(small_corpora, out, shard_tokens=SEQ_LEN * 300), quiet=True)
    return out


@pytest.fixture(scope="module")
def exported(mix, tmp_path_factory):
    return export_megatron(mix, tmp_path_factory.mktemp("export") / "megatron")


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _arg_lists(data_args: Path) -> dict[str, list[str]]:
    """data_args.txt as Megatron-LM's argparse sees it (`$(cat data_args.txt)`): flag -> its values."""
    lists: dict[str, list[str]] = {}
    for word in data_args.read_text().split():
        if word.startswith("--"):
            current = lists.setdefault(word, [])
        else:
            current.append(word)
    return lists


def _assert_reads_back(prefixes: list[str], reference) -> None:
    """Megatron's sequence j of prefix k, in order, is domainlm's sequence i (every one of them)."""
    i = 0
    for prefix in prefixes:
        dataset = IndexedDataset(prefix)
        assert (dataset.document_indices == np.arange(len(dataset) + 1)).all()  # one document per sequence
        assert (dataset.sequence_lengths == SEQ_LEN).all()
        for j in range(len(dataset)):
            assert np.array_equal(dataset[j].astype(np.int64), reference[i].numpy()), (prefix, j)
            i += 1
    assert i == len(reference)


def test_every_train_sequence_reads_back_through_megatron(mix, exported):
    train, _ = get_blend_from_list(_arg_lists(exported.out / "data_args.txt")["--train-data-path"])
    assert train == [str(exported.out / f"train/shard_{k:05d}") for k in range(7)]  # 1,846 sequences / 300
    _assert_reads_back(train, train_dataset(mix))
    assert IndexedDataset(train[0]).index.dtype is np.uint16


def test_every_validation_sequence_reads_back_per_source(mix, exported):
    valid, weights = get_blend_from_list(_arg_lists(exported.out / "data_args.txt")["--valid-data-path"])
    assert valid == [str(exported.out / "val" / name) for name in ("fin", "gen")] and weights is None
    references = val_datasets(mix)
    for prefix, name in zip(valid, ("fin", "gen"), strict=True):
        assert len(references[name]) > 50
        _assert_reads_back([prefix], references[name])


def test_bin_files_are_hard_links_to_the_mix(mix, exported):
    pairs = [(f"train/shard_{k:05d}.bin", f"train/shard_{k:05d}.bin") for k in range(7)]
    pairs += [("val/fin.bin", "val/fin.bin"), ("val/gen.bin", "val/gen.bin")]
    for exported_name, mix_name in pairs:
        a, b = os.stat(exported.out / exported_name), os.stat(mix / mix_name)
        assert (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
    summary = json.loads((exported.out / "export.json").read_text())
    assert summary["token_data"] == "hard links" and all(p["linked"] for p in summary["train"])


def test_idx_bytes_are_megatrons_format(exported):
    """Header, counts and arrays at the offsets megatron-core's _IndexWriter puts them (300 sequences)."""
    raw = (exported.out / "train/shard_00000.idx").read_bytes()
    assert raw[:9] == b"MMIDIDX\x00\x00" and raw[9:17] == (1).to_bytes(8, "little")
    assert raw[17] == DType.code_from_dtype(np.uint16) == 8
    assert int.from_bytes(raw[18:26], "little") == 300 and int.from_bytes(raw[26:34], "little") == 301
    assert len(raw) == 34 + 300 * 4 + 300 * 8 + 301 * 8
    pointers = np.frombuffer(raw, dtype="<i8", count=300, offset=34 + 1200)
    assert (pointers == np.arange(300) * SEQ_LEN * 2).all()  # byte offsets of uint16 sequences


def test_data_args_list_every_prefix_with_its_sequence_count(exported):
    lists = _arg_lists(exported.out / "data_args.txt")
    assert set(lists) == {"--train-data-path", "--valid-data-path"}
    train, weights = get_blend_from_list(lists["--train-data-path"])
    summary = json.loads((exported.out / "export.json").read_text())
    assert weights == [float(p["sequences"]) for p in summary["train"]] == [300.0] * 6 + [46.0]
    per_split = json.loads((exported.out / "per_split_data_args.json").read_text())
    assert get_blend_from_list(per_split["train"]) == (train, weights)
    assert per_split["valid"] == per_split["test"] == lists["--valid-data-path"]
    assert summary["nemo_paths"] == {"train": per_split["train"], "validation": per_split["valid"],
                                     "test": per_split["valid"]}  # fmt: skip
    assert [p["source"] for p in summary["valid"]] == ["fin", "gen"] and summary["skipped_valid"] == []
    assert (
        summary["mix_fingerprint"]
        == json.loads((Path(summary["mix"]) / "manifest.json").read_text())["fingerprint"]
    )


def test_megatron_gpt_dataset_trains_on_the_mix_sequences(mix, tmp_path):
    """Megatron's GPTDataset over per_split_data_args.json: with --seq-length = the mix's seq_len,
    each sample's input tokens are exactly one domainlm sequence; one validation set per source.

    Its own export: without --data-cache-path, GPTDataset caches its indices under <prefix>/cache/."""
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

    class _Tokenizer:  # what GPTDataset asks of a tokenizer: EOD / pad ids, vocab size (the token dtype)
        eod, pad = 50256, -1  # -1: Megatron's own "no pad token"
        vocab_size = 50257
        unique_identifiers = {"class": "gpt2"}

    exported = export_megatron(mix, tmp_path / "megatron")
    per_split = json.loads((exported.out / "per_split_data_args.json").read_text())
    config = GPTDatasetConfig(
        random_seed=1, sequence_length=SEQ_LEN, tokenizer=_Tokenizer(), reset_position_ids=False,
        reset_attention_mask=False, eod_mask_loss=False, create_attention_mask=False,
        blend_per_split=[get_blend_from_list(per_split[k]) for k in ("train", "valid", "test")],
        multiple_validation_sets=True, full_validation=True,
    )  # fmt: skip
    train, valid, _ = BlendedMegatronDatasetBuilder(
        GPTDataset, [200, None, None], lambda: True, config
    ).build()
    ours = {bytes(s.numpy().astype(np.uint16)) for s in train_dataset(mix)}
    for k in range(200):
        assert bytes(train[k]["tokens"].numpy().astype(np.uint16)) in ours
    references = val_datasets(mix)
    for dataset, name in zip(valid, ("fin", "gen"), strict=True):
        ours = {bytes(s.numpy().astype(np.uint16)) for s in references[name]}
        samples = {bytes(dataset[k]["tokens"].numpy().astype(np.uint16)) for k in range(len(dataset))}
        # a sample is seq_len + 1 tokens, so the last sequence only supplies the final label
        assert len(dataset) == len(references[name]) - 1 and samples <= ours and len(samples) == len(dataset)


def test_a_single_phase_mix_gets_no_phase_files(mix, exported):
    assert len(open_mix(mix).phases) == 1
    top = sorted(p.name for p in exported.out.iterdir())
    assert top == [
        ".domainlm-output.json",
        "data_args.txt",
        "export.json",
        "per_split_data_args.json",
        "train",
        "val",
    ]
    assert "phases" not in json.loads((exported.out / "export.json").read_text())


@pytest.fixture(scope="module")
def phased(small_corpora, tmp_path_factory) -> tuple[Path, Path]:
    """main (90% of the tokens at fin/gen 0.4/0.6) then anneal (10% at 0.8/0.2), in 500-sequence shards."""
    mix = tmp_path_factory.mktemp("phased") / "mix"
    build_mix(phased_config(small_corpora, mix, shard_tokens=SEQ_LEN * 500), quiet=True)
    return mix, tmp_path_factory.mktemp("phased_export") / "megatron"


def test_each_phase_has_data_args_that_read_back_exactly_its_sequences(phased):
    mix, out = phased
    exported, manifest, reference = export_megatron(mix, out), open_mix(mix), train_dataset(mix)
    summary = json.loads((out / "export.json").read_text())
    assert [(p["name"], p["start"], p["stop"]) for p in summary["phases"]] == [
        ("main", 0, 1187),
        ("anneal", 1187, 1319),
    ]
    valid = [str(out / "val" / name) for name in ("fin", "gen")]
    for phase, info in zip(manifest.phases, summary["phases"], strict=True):
        lists = _arg_lists(out / f"data_args.{phase.name}.txt")
        prefixes, weights = get_blend_from_list(lists["--train-data-path"])
        assert prefixes == [str(out / shard.removesuffix(".bin")) for shard in phase.shards]
        assert sum(weights) == phase.num_sequences  # weights = sequence counts: 500 + 500 + 187, then 132
        per_split = json.loads((out / f"per_split_data_args.{phase.name}.json").read_text())
        assert get_blend_from_list(per_split["train"]) == (prefixes, weights)
        assert (
            per_split["valid"] == lists["--valid-data-path"] == valid
        )  # every phase: the same held-out sets
        assert (
            info["nemo_paths"]["train"]
            == per_split["train"]
            == exported.train_blend(exported.phases[phase.index].train)
        )
        _assert_reads_back(prefixes, [reference[i] for i in range(phase.start, phase.stop)])
    # data_args.txt still blends every shard: the summary says to train phase by phase instead
    assert get_blend_from_list(_arg_lists(out / "data_args.txt")["--train-data-path"])[0] == [
        str(out / f"train/shard_{k:05d}") for k in range(4)
    ]


def test_cli_says_a_phased_mix_is_trained_phase_by_phase(phased, tmp_path):
    mix, _ = phased
    result = CliRunner().invoke(_app(), ["export", "megatron", str(mix), "-o", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "train phase by phase, one Megatron run per phase" in text
    assert "continuing from the previous run's checkpoint" in text
    assert str(tmp_path / "a" / "data_args.txt") not in text  # the all-phase blend is not offered
    for name, count in (("main", "1,187"), ("anneal", "132")):
        assert f"{name}: {count} sequences" in text and str(tmp_path / "a" / f"data_args.{name}.txt") in text


def test_copies_where_hard_links_are_refused(mix, tmp_path, monkeypatch):
    def cross_device(source, target):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(megatron.os, "link", cross_device)
    result = export_megatron(mix, tmp_path / "copied")
    assert result.summary()["token_data"] == "copies"
    copy, original = tmp_path / "copied/train/shard_00000.bin", mix / "train/shard_00000.bin"
    assert copy.stat().st_ino != original.stat().st_ino and copy.read_bytes() == original.read_bytes()
    _assert_reads_back([str(tmp_path / "copied/val/gen")], val_datasets(mix)["gen"])


def test_other_link_errors_are_not_hidden(mix, tmp_path, monkeypatch):
    def failing(source, target):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(megatron.os, "link", failing)
    with pytest.raises(OSError, match="Input/output error"):
        export_megatron(mix, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def mix_uint32(mix, tmp_path_factory) -> Path:
    """The mix rewritten as uint32 with every id moved above 65,535 (a vocabulary of 150,257)."""
    out = tmp_path_factory.mktemp("wide") / "mix"
    shutil.copytree(mix, out)
    for path in [*out.glob("train/*.bin"), *out.glob("val/*.bin")]:
        (np.fromfile(path, dtype=np.uint16).astype(np.uint32) + 100_000).tofile(path)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest.update(dtype="uint32", vocab_size=150_257)
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def test_uint32_mix_exports_as_int32_with_the_same_bytes(mix_uint32, tmp_path):
    result = export_megatron(mix_uint32, tmp_path / "wide")
    assert result.dtype == "int32" and result.summary()["mix_dtype"] == "uint32"
    first = IndexedDataset(str(tmp_path / "wide/train/shard_00000"))
    assert first.index.dtype is np.int32 and int(first[0].min()) >= 100_000
    _assert_reads_back([str(result.out / p.name) for p in result.train], train_dataset(mix_uint32))
    _assert_reads_back([str(result.out / "val/fin")], val_datasets(mix_uint32)["fin"])


def test_write_idx_uint32_ids_near_the_int32_limit(tmp_path):
    ids = np.array([[0, 65_536, 2**31 - 1], [70_000, 1, 2**31 - 2]], dtype=np.uint32)
    ids.tofile(tmp_path / "wide.bin")
    write_idx(tmp_path / "wide.idx", num_sequences=2, seq_len=3, dtype=megatron_dtype("uint32", 2**31))
    dataset = IndexedDataset(str(tmp_path / "wide"))
    assert [dataset[k].astype(np.int64).tolist() for k in range(2)] == ids.astype(np.int64).tolist()


def test_megatron_dtype_rules():
    assert megatron_dtype("uint16", 50_257) == "uint16" and megatron_dtype("uint32", 150_000) == "int32"
    with pytest.raises(DataError, match=r"vocab_size 2147483649: Megatron's indexed dataset has no dtype"):
        megatron_dtype("uint32", 2**31 + 1)


def test_source_without_held_out_data_has_no_validation_prefix(small_corpora, tmp_path):
    mix = tmp_path / "mix"
    build_mix(small_config(small_corpora, mix, val_fraction=0.0), quiet=True)
    result = export_megatron(mix, tmp_path / "out")
    assert result.valid == [] and result.skipped_valid == ["fin", "gen"]
    assert "--valid-data-path" not in (tmp_path / "out/data_args.txt").read_text()
    per_split = json.loads((tmp_path / "out/per_split_data_args.json").read_text())
    assert per_split["valid"] is None and get_blend_from_list(per_split["valid"]) is None


def test_existing_target_is_refused_and_left_unchanged(mix, exported):
    before = _tree(exported.out)
    with pytest.raises(ConfigError, match=r"output directory already exists; choose another --out or pass"):
        export_megatron(mix, exported.out)
    assert _tree(exported.out) == before


def test_overwrite_replaces_an_earlier_export(mix, tmp_path):
    export_megatron(mix, tmp_path / "out")
    (tmp_path / "out/data_args.txt").write_text("stale")
    result = export_megatron(mix, tmp_path / "out", overwrite=True)
    assert (tmp_path / "out/data_args.txt").read_text() == result.data_args()


def test_target_with_whitespace_is_refused(mix, tmp_path):
    with pytest.raises(
        ConfigError, match=r"contains whitespace, which Megatron's data-args readers split on"
    ):
        export_megatron(mix, tmp_path / "my export")
    assert not (tmp_path / "my export").exists()


def test_truncated_or_missing_mix_file_is_refused(mix, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(mix, broken)
    with open(broken / "train/shard_00002.bin", "r+b") as handle:
        handle.truncate(1000)
    with pytest.raises(DataError, match=r"shard_00002.bin: shard has 1000 bytes, the manifest says 300 x 64"):
        export_megatron(broken, tmp_path / "out")
    (broken / "val/gen.bin").unlink()
    (broken / "train/shard_00002.bin").unlink()
    with pytest.raises(
        DataError, match=r"shard_00002.bin: shard is missing; the mix directory is incomplete"
    ):
        export_megatron(broken, tmp_path / "out")
    shutil.copy(mix / "train/shard_00002.bin", broken / "train/shard_00002.bin")
    with pytest.raises(DataError, match=r"gen.bin: held-out tokens of source 'gen' is missing"):
        export_megatron(broken, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_target_containing_the_mix_is_refused(mix):
    with pytest.raises(ConfigError, match=r"contains this command's input"):
        export_megatron(mix, mix.parent)


def _app() -> typer.Typer:
    app = typer.Typer()
    export_cli.register(app)

    @app.callback()
    def _root() -> None:  # keeps `export` a group, as in the real app
        pass

    return app


def test_cli_json_and_quiet(mix, tmp_path):
    result = CliRunner().invoke(_app(), ["export", "megatron", str(mix), "-o", str(tmp_path / "a"), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["out"] == str(tmp_path / "a") and summary["token_data"] == "hard links"
    assert len(summary["train"]) == 7 and summary == json.loads((tmp_path / "a/export.json").read_text())
    result = CliRunner().invoke(_app(), ["export", "megatron", str(mix), "--out", str(tmp_path / "b"), "-q"])
    assert result.exit_code == 0 and result.stdout == "" and (tmp_path / "b/data_args.txt").is_file()


def test_cli_table_names_every_prefix(mix, tmp_path):
    result = CliRunner().invoke(_app(), ["export", "megatron", str(mix), "-o", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    assert (
        "train/shard_00006" in result.stdout and "val/gen" in result.stdout and "hard link" in result.stdout
    )


def test_cli_existing_target_exits_2_with_one_line(mix, exported):
    before = _tree(exported.out)
    run = subprocess.run(
        [sys.executable, "-m", "domainlm", "export", "megatron", str(mix), "--out", str(exported.out)],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "already exists" in lines[0]
    assert "Traceback" not in run.stderr and run.stdout == ""
    assert _tree(exported.out) == before
