"""Per-sequence source ids: `train/shard_NNNNN.source_ids`, one uint8 per sequence (README "Mix output format")."""

import json

import numpy as np
import pytest

from domainlm.errors import DataError
from domainlm.mix.build import build_mix
from domainlm.mix.dataset import train_dataset, train_source_ids
from domainlm.mix.manifest import open_mix
from domainlm.mix.shards import output_fingerprint
from domainlm.outputs import file_sha256
from domainlm.testing.mixes import source_entry, write_manifest
from tests.mix.conftest import small_config
from tests.mix.test_build import _source_sequences


@pytest.fixture(scope="module")
def built(small_corpora, tmp_path_factory):
    """The golden mix of test_phases (fin 0.6 / gen 0.4, no phases, two shards)."""
    config = small_config(small_corpora, tmp_path_factory.mktemp("ids") / "out")
    return config, build_mix(config, quiet=True)


def test_source_ids_match_the_allocation_and_the_tokens(built):
    config, result = built
    manifest = open_mix(result.out)
    ids = train_source_ids(result.out)
    assert ids[:].dtype == np.uint8 and len(ids) == manifest.train.num_sequences
    assert np.bincount(ids[:]).tolist() == [a.sequences for a in result.allocations] == [1108, 738]
    sets = {k: set(_source_sequences(config, s.name)) for k, s in enumerate(manifest.sources)}
    train = train_dataset(result.out)
    for i in range(0, len(train), 7):
        assert train[i].numpy().astype(np.uint16).tobytes() in sets[ids[i]]
    for shard in manifest.train.shards:  # one byte per sequence beside each shard, checksummed
        path = result.out / shard.source_ids_path
        assert shard.source_ids_path == shard.path.removesuffix(".bin") + ".source_ids"
        assert path.stat().st_size == shard.num_sequences
        assert file_sha256(path) == shard.source_ids_sha256
    assert ids[-1] == int(ids[np.array([len(ids) - 1])][0]) and ids[2:5].tolist() == ids[:][2:5].tolist()
    assert [(p.name, p.start, p.stop) for p in manifest.phases] == [("main", 0, len(ids))]


def test_source_ids_are_in_the_fingerprint(built):
    _, result = built
    manifest = json.loads((result.out / "manifest.json").read_text())
    shard = manifest["train"]["shards"][0]
    assert output_fingerprint(manifest, result.out) == manifest["fingerprint"]
    shard["source_ids_sha256"] = "0" * 64
    assert output_fingerprint(manifest, result.out) != manifest["fingerprint"]


def test_missing_source_ids_are_one_line(small_corpora, tmp_path):
    result = build_mix(small_config(small_corpora, tmp_path / "out"), quiet=True)
    (result.out / "train/shard_00001.source_ids").unlink()
    with pytest.raises(
        DataError, match=r"shard_00001.source_ids: is missing, the manifest says \d+ sequences"
    ):
        train_source_ids(result.out)


def test_older_manifest_without_ids_or_phases(tmp_path):
    shards = [{"path": "train/shard_00000.bin", "num_sequences": 3, "sha256": "0" * 64}]
    root = write_manifest(
        tmp_path / "mix",
        [source_entry("legal")],
        train={"num_sequences": 3, "num_tokens": 6, "shards": shards},
    )
    with pytest.raises(DataError, match="has no source ids .*rebuild the mix"):
        train_source_ids(root)
    with pytest.raises(DataError, match="records no phases"):
        open_mix(root).phase_of(0)
