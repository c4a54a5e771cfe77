"""Mixture schedules (`phases:`) and per-sequence source ids.

The golden checksums below were taken from a build with the code before phases existed
(commit 7bc1601): a mix without `phases:` must keep writing exactly those bytes.
"""

from pathlib import Path

import pytest

from domainlm.mix.build import build_mix
from domainlm.outputs import file_sha256
from tests.mix.conftest import small_config

GOLDEN = {
    "all": {
        "train/shard_00000.bin": "56f603c208d9e86b8e92cdfd7ed66bfb404c3554cd64c6c85b41bec77fb6acf2",
        "train/shard_00001.bin": "c95294b5c64824cd6b61f50ba69e21a9f9fb1461852d809f9c1a07dadfe4c9aa",
        "val/fin.bin": "31e60b6c15f10307e7e4f97cc42d3cf5cf00ed8a898c38fefea3aeba5446f79e",
        "val/gen.bin": "7b650d5acb9713a83a399d9026f069ee12144a42565f2d492c7023a4ac415a74",
        "val/fin.jsonl.gz": "fe6a206cba0f98f7aa957e92aa017f66bbd15f2a6eb863ad115eb6aa54936e69",
        "val/gen.jsonl.gz": "183791e5da55c774da32f92758375246ce7668509d545fb28891f231ce8508e2",
    },
    "20000/seed3": {
        "train/shard_00000.bin": "01720f3bdb96c915445d81ee1ac9d521e01caa3563dde12a32dc63253035436e",
        "val/fin.bin": "43ec88f7f9e7caf4f038049bdd90b47f227b24bb5d0ac93f89a8d5b27d05f3d0",
        "val/gen.bin": "e8ac7f89b29aadd390a7bf37b3f57c7637421a242985eee4c0e76486af3d0638",
        "val/fin.jsonl.gz": "ed907fd390ac77553961cba2299518e1327dfc3dacdd0cab0e5055764041eab4",
        "val/gen.jsonl.gz": "222495e9fc7e6f7a5b1882c05c1a9ddbd7ad2e4a7f535d18d8249a32c5956c34",
    },
}
GOLDEN_SEQUENCES = {"all": (1108, 738), "20000/seed3": (187, 125)}


def _token_files(root: Path) -> dict[str, str]:
    paths = [*root.glob("train/*.bin"), *root.glob("val/*")]
    return {p.relative_to(root).as_posix(): file_sha256(p) for p in sorted(paths)}


@pytest.mark.parametrize(("case", "fields"), [("all", {}), ("20000/seed3", {"total_tokens": 20000, "seed": 3})])
def test_without_phases_the_bytes_are_those_of_before(small_corpora, tmp_path, case, fields):
    result = build_mix(small_config(small_corpora, tmp_path / "out", **fields), quiet=True)
    assert tuple(a.sequences for a in result.allocations) == GOLDEN_SEQUENCES[case]
    assert _token_files(result.out) == GOLDEN[case]
