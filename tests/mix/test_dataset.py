import json

import numpy as np
import pytest
import torch

from domainlm.errors import ConfigError, DataError
from domainlm.mix.dataset import PackedSequences, RankSlice, train_dataset, val_datasets
from domainlm.mix.manifest import FORMAT, open_mix


def _write(path, values, dtype=np.uint16):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.asarray(values, dtype=dtype).tofile(path)
    return path


def test_packed_sequences_across_files(tmp_path):
    a = _write(tmp_path / "a.bin", range(12))  # 3 sequences of 4
    b = _write(tmp_path / "b.bin", range(100, 108))  # 2 sequences of 4
    ds = PackedSequences([a, b], seq_len=4, dtype="uint16")
    assert len(ds) == 5
    assert ds[0].tolist() == [0, 1, 2, 3]
    assert ds[2].tolist() == [8, 9, 10, 11]
    assert ds[3].tolist() == [100, 101, 102, 103]
    assert ds[-1].tolist() == [104, 105, 106, 107]
    assert ds[4].dtype == torch.int64
    with pytest.raises(IndexError):
        ds[5]


def test_packed_sequences_uint32_and_pickle(tmp_path):
    import pickle

    path = _write(tmp_path / "c.bin", [70_000, 1, 2, 70_001], dtype=np.uint32)
    ds = PackedSequences([path], seq_len=2, dtype=np.uint32)
    assert ds[0].tolist() == [70_000, 1]
    clone = pickle.loads(pickle.dumps(ds))
    assert len(pickle.dumps(ds)) < 2000  # the memmap is not pickled with it
    assert clone[1].tolist() == [2, 70_001]


def test_truncated_shard_is_an_error(tmp_path):
    path = _write(tmp_path / "bad.bin", range(7))
    with pytest.raises(DataError, match="not a whole number of 4-token"):
        PackedSequences([path], seq_len=4, dtype="uint16")


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_rank_slices_are_disjoint_and_cover(world):
    data = list(range(12))
    slices = [RankSlice(data, rank, world) for rank in range(world)]
    seen = [s[k] for s in slices for k in range(len(s))]
    assert len(seen) == len(set(seen))  # no overlap
    assert set(seen) == set(range(world * (12 // world)))  # no gap
    assert all(len(s) == 12 // world for s in slices)


def test_rank_slice_resume_and_wrap():
    data = list(range(10))
    fresh = [RankSlice(data, r, 2) for r in range(2)]
    # Global order is rank-interleaved: step k consumes samples 2k, 2k+1.
    consumed = 6
    resumed = [RankSlice(data, r, 2, start_sample=consumed) for r in range(2)]
    assert [resumed[0][0], resumed[1][0]] == [fresh[0][3], fresh[1][3]] == [6, 7]
    assert [resumed[0][2], resumed[1][2]] == [0, 1]  # wraps into the next epoch
    assert resumed[0].global_index(7) == (6 + 14) % 10


def test_rank_slice_bad_arguments():
    with pytest.raises(ConfigError, match="rank 2: must be in"):
        RankSlice([1, 2], rank=2, world_size=2)
    with pytest.raises(ConfigError, match="world_size 0"):
        RankSlice([1, 2], rank=0, world_size=0)
    with pytest.raises(ConfigError, match="start_sample -1"):
        RankSlice([1, 2], rank=0, world_size=1, start_sample=-1)
    with pytest.raises(DataError, match="dataset is empty"):
        RankSlice([], rank=0, world_size=1)


def test_open_mix_errors(tmp_path):
    with pytest.raises(DataError, match="no manifest.json"):
        open_mix(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(DataError, match="format 'other' is not"):
        open_mix(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": FORMAT, "seq_len": 4}))
    with pytest.raises(DataError, match="required"):
        open_mix(tmp_path)


def test_datasets_from_a_built_mix(finance_mix):
    manifest = open_mix(finance_mix)
    train = train_dataset(finance_mix)
    assert len(train) == manifest.train.num_sequences
    assert train[0].shape == (manifest.seq_len,)
    vals = val_datasets(finance_mix)
    assert {name: len(ds) for name, ds in vals.items()} == {s.name: s.val.sequences for s in manifest.sources}
    assert int(train[len(train) - 1].max()) < manifest.vocab_size
