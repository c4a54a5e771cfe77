"""Mixture schedules (`phases:`) and per-sequence source ids.

The golden checksums below were taken from a build with the code before phases existed
(commit 7bc1601): a mix without `phases:` must keep writing exactly those bytes.
"""

import json
import subprocess
import sys
from collections import Counter
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from domainlm.errors import ConfigError, DataError
from domainlm.mix.allocate import PhaseTarget, Supply, allocate_phases, exact_ratios, largest_remainder
from domainlm.mix.build import build_mix
from domainlm.mix.config import MixConfig, load_mix_config, target_ratios
from domainlm.mix.dataset import RankSlice, train_dataset, train_source_ids
from domainlm.mix.manifest import open_mix
from domainlm.mix.permutation import Permutation
from domainlm.outputs import file_sha256
from tests.mix import DATA_MIXES
from tests.mix.conftest import GPT2, small_config

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


@pytest.mark.parametrize(
    ("case", "fields"), [("all", {}), ("20000/seed3", {"total_tokens": 20000, "seed": 3})]
)
def test_without_phases_the_bytes_are_those_of_before(small_corpora, tmp_path, case, fields):
    result = build_mix(small_config(small_corpora, tmp_path / "out", **fields), quiet=True)
    assert tuple(a.sequences for a in result.allocations) == GOLDEN_SEQUENCES[case]
    assert _token_files(result.out) == GOLDEN[case]


# --- mixture schedules ------------------------------------------------------------------------

MAIN_ANNEAL = [
    {"name": "main", "share": 0.9, "ratios": {"fin": 0.4, "gen": 0.6}},
    {"name": "anneal", "share": 0.1, "ratios": {"fin": 0.8, "gen": 0.2}},
]


def phased_config(corpora: Path, out: Path | None, phases=MAIN_ANNEAL, **fields) -> MixConfig:
    """small_config's corpora and settings, with a schedule instead of source ratios."""
    data = small_config(corpora, out).model_dump()
    for source in data["sources"].values():
        source["ratio"] = None
    data.update(phases=phases, **fields)
    return MixConfig.model_validate(data)


@pytest.fixture(scope="module")
def phased(small_corpora, tmp_path_factory):
    """fin (3 repeats) / gen at 0.4/0.6 for 90% of the tokens, then 0.8/0.2; `all` the data allows."""
    return build_mix(phased_config(small_corpora, tmp_path_factory.mktemp("phased") / "out"), quiet=True)


def _expected_split(total: int, shares, ratios) -> list[list[int]]:
    sizes = largest_remainder(total, exact_ratios(shares))
    return [largest_remainder(n, exact_ratios(r)) for n, r in zip(sizes, ratios, strict=True)]


def test_phases_are_exact_to_the_sequence(phased):
    manifest = open_mix(phased.out)
    total = manifest.train.num_sequences
    split = _expected_split(total, [0.9, 0.1], [[0.4, 0.6], [0.8, 0.2]])
    # By hand: gen has 738 sequences and no repeats. S=1319: phases 1187.1 -> 1187, 131.9 -> 132;
    # main 474.8 / 712.2 -> 475 / 712, anneal 105.6 / 26.4 -> 106 / 26: gen 738. S=1320 gives gen 739.
    assert (total, split) == (1319, [[475, 712], [106, 26]])
    assert [[s.sequences for s in p.sources] for p in manifest.phases] == split
    ids = train_source_ids(phased.out)[:]
    assert len(ids) == total
    for phase, counts in zip(manifest.phases, split, strict=True):
        # read back from the source ids: each phase's range holds exactly its allocation
        assert np.bincount(ids[phase.start : phase.stop], minlength=2).tolist() == counts
        assert phase.num_sequences == sum(counts) == phase.stop - phase.start
        assert phase.num_tokens == sum(counts) * manifest.seq_len
        assert [s.realized_ratio for s in phase.sources] == pytest.approx([n / sum(counts) for n in counts])
        assert [s.tokens for s in phase.sources] == [n * manifest.seq_len for n in counts]
    main, anneal = manifest.phases
    assert [(p.name, p.start, p.stop) for p in manifest.phases] == [("main", 0, 1187), ("anneal", 1187, 1319)]
    # shard_tokens = 1000 sequences: the anneal starts a shard of its own
    assert [(p.shards, p.start) for p in manifest.phases] == [
        (["train/shard_00000.bin", "train/shard_00001.bin"], 0),
        (["train/shard_00002.bin"], 1187),
    ]
    assert [s.num_sequences for s in manifest.train.shards] == [1000, 187, 132]
    assert [s.target_ratio for s in anneal.sources] == [0.8, 0.2]
    assert (main.target_share, anneal.target_share) == (0.9, 0.1)
    assert anneal.realized_share == pytest.approx(sum(split[1]) / total)
    # overall: gen (no repeats) binds `all` at exactly one pass; fin's target is 0.9*0.4 + 0.1*0.8
    fin, gen = manifest.sources
    assert fin.tokens_taken == (split[0][0] + split[1][0]) * manifest.seq_len
    assert gen.repeats == 1.0 and 1 < fin.repeats < 3
    assert (fin.target_ratio, gen.target_ratio) == (0.44, 0.56)
    for k, source in enumerate(manifest.sources):
        assert source.tokens_taken == int(np.sum(ids == k)) * manifest.seq_len
    assert manifest.phase_of(0).name == "main" and manifest.phase_of(main.stop).name == "anneal"
    assert manifest.phase_of(total - 1).index == 1
    with pytest.raises(IndexError):
        manifest.phase_of(total)


def test_all_is_the_largest_total_within_the_caps_over_all_phases():
    # a: 10 sequences x 3 repeats = 30 over both phases; overall ratio 0.5*0.4 + 0.5*0.8 = 0.6.
    # S=51: phases 26/25 -> a gets 10 + 20 = 30; S=52..57 give a 31..34 (worked by hand).
    supplies = [Supply("a", 0.6, 1_000, max_repeats=3), Supply("b", 0.4, 10_000)]
    phases = [PhaseTarget("p0", Fraction(1, 2), (0.4, 0.6)), PhaseTarget("p1", Fraction(1, 2), (0.8, 0.2))]
    schedule = allocate_phases(supplies, phases, seq_len=100, total_tokens="all")
    assert [p.counts for p in schedule.phases] == [(10, 16), (20, 5)]
    assert [(p.start, p.stop) for p in schedule.phases] == [(0, 26), (26, 51)]
    assert schedule.phases[1].offsets == (10, 16)  # where each source's selection continues
    assert [a.sequences for a in schedule.allocations] == [30, 21]
    assert schedule.allocations[0].repeats == 3.0


def test_a_source_may_sit_a_phase_out():
    supplies = [Supply("a", 0.5, 10_000), Supply("b", 0.5, 10_000)]
    phases = [PhaseTarget("p0", Fraction(3, 4), (0.5, 0.5)), PhaseTarget("p1", Fraction(1, 4), (1.0, 0.0))]
    schedule = allocate_phases(supplies, phases, seq_len=10, total_tokens=1_000)
    assert [p.counts for p in schedule.phases] == [(38, 37), (25, 0)]  # 75 = 37.5 + 37.5: tie to the first


def _selection_rows(
    sequences: list[bytes], name: str, seed: int, total: int, positions: range
) -> list[bytes]:
    """A source's sequences at stream positions of a mix with phases: full passes in a seeded
    order, then a seeded subset for the partial pass (`total` = its sequences over all phases)."""
    one_pass = len(sequences)
    order = Permutation(one_pass, f"{seed}/order/{name}")
    partial = Permutation(one_pass, f"{seed}/partial/{name}")
    rows = []
    for j in positions:
        walk = partial if j // one_pass == total // one_pass else order
        rows.append(sequences[int(walk(np.array([j % one_pass]))[0])])
    return rows


def test_each_phase_holds_its_own_sequences_shuffled_within_it(phased, small_corpora):
    from tests.mix.test_build import _source_sequences

    manifest = open_mix(phased.out)
    config = phased_config(small_corpora, None)
    train = train_dataset(phased.out)
    ids = train_source_ids(phased.out)
    for k, source in enumerate(manifest.sources):
        sequences = _source_sequences(config, source.name)
        given = 0
        for phase in manifest.phases:
            count = phase.sources[k].sequences
            window = range(given, given + count)
            expected = _selection_rows(sequences, source.name, config.seed, source.tokens_taken // 64, window)
            held = [
                train[i].numpy().astype(np.uint16).tobytes()
                for i in range(phase.start, phase.stop)
                if ids[i] == k
            ]
            # every sequence of the phase lies in its range, and nothing else does
            assert Counter(held) == Counter(expected)
            given += count
    main_ids = ids[manifest.phases[0].start : manifest.phases[0].stop]
    assert not np.all(np.diff(main_ids.astype(int)) >= 0)  # shuffled, not source block after block


def test_repeats_are_capped_over_all_phases(small_corpora, tmp_path):
    # 60K tokens: each phase alone fits fin's 3 x 410 sequences, but together they need more.
    phases = [
        {"name": "main", "share": 0.5, "ratios": {"fin": 0.6, "gen": 0.4}},
        {"name": "anneal", "share": 0.5, "ratios": {"fin": 0.9, "gen": 0.1}},
    ]
    config = phased_config(small_corpora, tmp_path / "out", phases=phases, total_tokens="120K")
    with pytest.raises(
        DataError,
        match=r"source 'fin' has .* training tokens but its phases need .* \(main 0.6 of .*, anneal 0.9 of .*\) "
        r"= 3\.\d+ repeats over all phases, over max_repeats 3: .* tokens missing; .*fin.max_repeats >= 3\.",
    ):
        build_mix(config, quiet=True)
    assert list(tmp_path.iterdir()) == []  # nothing written, no temp dir left


def test_token_counts_per_phase(small_corpora, tmp_path):
    phases = [
        {"name": "warm", "tokens": "12800", "ratios": {"fin": 0.5, "gen": 0.5}},
        {"name": "anneal", "tokens": 3200, "ratios": {"fin": 1.0}},
    ]
    result = build_mix(phased_config(small_corpora, tmp_path / "out", phases=phases), quiet=True)
    manifest = open_mix(result.out)
    assert [(p.num_tokens, p.start, p.stop) for p in manifest.phases] == [(12800, 0, 200), (3200, 200, 250)]
    assert [[s.sequences for s in p.sources] for p in manifest.phases] == [[100, 100], [50, 0]]
    assert np.bincount(train_source_ids(result.out)[200:250], minlength=2).tolist() == [50, 0]


def test_one_explicit_phase_writes_the_bytes_of_a_mix_without_phases(small_corpora, tmp_path):
    phases = [{"share": 1, "ratios": {"fin": 0.6, "gen": 0.4}}]
    result = build_mix(phased_config(small_corpora, tmp_path / "out", phases=phases), quiet=True)
    assert _token_files(result.out) == GOLDEN["all"]
    assert open_mix(result.out).phases[0].name == "phase0"


# --- resume across a phase boundary -----------------------------------------------------------


def test_rank_slice_resumed_inside_phase_two_matches_an_uninterrupted_pass(phased):
    manifest = open_mix(phased.out)
    train, ids = train_dataset(phased.out), train_source_ids(phased.out)
    world = 2
    anneal = manifest.phases[1]
    consumed = anneal.start + 5 + (anneal.start + 5) % world  # a step boundary inside the anneal phase
    assert anneal.start < consumed < anneal.stop
    for rank in range(world):
        fresh = RankSlice(train, rank, world)
        resumed = RankSlice(train, rank, world, start_sample=consumed)
        skip = consumed // world
        for k in range(len(fresh) - skip):
            assert torch.equal(resumed[k], fresh[skip + k])
        first = resumed.global_index(0)
        assert manifest.phase_of(first).name == "anneal"
        assert RankSlice(ids, rank, world, start_sample=consumed)[0] == ids[first]
    # the two ranks together, resumed, cover exactly the samples an uninterrupted run had left
    left = {RankSlice(train, r, world, consumed).global_index(k) for r in range(world) for k in range(3)}
    assert left == set(range(consumed, consumed + 3 * world))


# --- config and CLI errors --------------------------------------------------------------------


def _yaml_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mix.yaml"
    path.write_text(text, encoding="utf-8")
    return path


SOURCES = "sources:\n  fin: {paths: [finance], max_repeats: 3}\n  gen: {paths: [general]}\n"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "phases:\n  - {name: main, share: 0.9, ratios: {fin: 0.4, gen: 0.6}}\n"
            "  - {name: anneal, share: 0.05, ratios: {fin: 0.8, gen: 0.2}}\n",
            r"phases: shares sum to 0.95 \(main 0.9 \+ anneal 0.05\), not 1; adjust them to sum to 1",
        ),
        (
            "phases:\n  - {share: 0.9, ratios: {fin: 0.4, gen: 0.6}}\n  - {share: 0.1, ratios: {fin: 0.8, legal: 0.2}}\n",
            r"phases.1.ratios.legal: unknown source 'legal' \(sources: fin, gen\); name a source declared under `sources:`",
        ),
        (
            "phases:\n  - {share: 1, ratios: {fin: 0.5, gen: 0.4}}\n",
            r"phases.0.ratios: ratios sum to 0.9 \(fin 0.5 \+ gen 0.4\), not 1",
        ),
        (
            "phases:\n  - {share: 1, tokens: 5M, ratios: {fin: 0.5, gen: 0.5}}\n",
            r"phases.0: give its `share` of the tokens or its `tokens`, exactly one of them",
        ),
        (
            "phases:\n  - {share: 0.5, ratios: {fin: 1}}\n  - {tokens: 5M, ratios: {gen: 1}}\n",
            r"phases: some give a share and some tokens",
        ),
        (
            "total_tokens: 10M\nphases:\n  - {tokens: 5M, ratios: {fin: 1}}\n  - {tokens: 4M, ratios: {gen: 1}}\n",
            r"phases: tokens sum to 9000000 but total_tokens is 10000000; make them equal, or set total_tokens to `all`",
        ),
        ("phases:\n  - {share: 1, ratios: {fin: 1}}\n", r"sources.gen: in no phase's ratios"),
        (
            "phases:\n  - {name: a, share: 0.5, ratios: {fin: 1}}\n  - {name: a, share: 0.5, ratios: {gen: 1}}\n",
            r"phases: name 'a' is used by more than one phase",
        ),
        (
            "phases:\n  - {share: 1, ratios: {fin: 0, gen: 1}}\n",
            r"phases.0.ratios.fin: 0.0 is not in \(0, 1\]",
        ),
        ("phases: []\n", r"phases: empty list"),
    ],
)
def test_bad_phases_are_config_errors(tmp_path, body, message):
    with pytest.raises(ConfigError, match=message):
        load_mix_config(_yaml_config(tmp_path, SOURCES + body))


def test_source_ratio_with_or_without_phases(tmp_path):
    with_both = "sources:\n  fin: {paths: [finance], ratio: 0.5}\n  gen: {paths: [general]}\n"
    with pytest.raises(ConfigError, match=r"sources.fin.ratio: 0.5 is not used with `phases:`"):
        load_mix_config(
            _yaml_config(tmp_path, with_both + "phases:\n  - {share: 1, ratios: {fin: 0.5, gen: 0.5}}\n")
        )
    with pytest.raises(
        ConfigError,
        match=r"sources.fin.ratio: missing; give every source a ratio in \(0, 1\], or give `phases:`",
    ):
        load_mix_config(_yaml_config(tmp_path, SOURCES))


def test_shipped_schedule_loads():
    config = load_mix_config(DATA_MIXES / "finance_anneal.yaml")
    assert [p.name for p in config.phases] == ["main", "anneal"]
    assert target_ratios(config) == pytest.approx([0.44, 0.56])


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "domainlm", "mix", *map(str, args)],
        capture_output=True, text=True, timeout=300, cwd=DATA_MIXES.parent,
    )  # fmt: skip


def _error_line(run) -> str:
    """The run failed with exit 2 and one `error:` line, its last, and no traceback."""
    assert run.returncode == 2, run.stderr
    lines = run.stderr.splitlines()
    assert [line for line in lines if line.startswith("error: ")] == lines[-1:]
    assert "Traceback" not in run.stderr
    return lines[-1]


def test_cli_bad_schedule_is_one_line_exit_2(small_corpora, tmp_path):
    fin, gen = small_corpora / "fin.jsonl", small_corpora / "gen.jsonl"
    head = (
        f"sources:\n  fin: {{paths: {fin}, max_repeats: 3}}\n  gen: {{paths: {gen}}}\n"
        f"seq_len: 64\nval_fraction: 0.2\ntokenizer: {GPT2}\n"
    )
    shares = tmp_path / "shares.yaml"
    shares.write_text(
        head
        + "phases:\n  - {share: 0.9, ratios: {fin: 0.4, gen: 0.6}}\n  - {share: 0.05, ratios: {fin: 1}}\n"
    )
    assert "phases: shares sum to 0.95" in _error_line(_cli(shares, "--out", tmp_path / "out"))
    greedy = tmp_path / "greedy.yaml"
    greedy.write_text(
        head + "total_tokens: 120K\nphases:\n  - {share: 0.5, ratios: {fin: 0.6, gen: 0.4}}\n"
        "  - {share: 0.5, ratios: {fin: 0.9, gen: 0.1}}\n"
    )
    line = _error_line(_cli(greedy, "--out", tmp_path / "out", "--no-cache"))
    assert "repeats over all phases, over max_repeats 3" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["greedy.yaml", "shares.yaml"]  # nothing written


def test_cli_prints_the_phases_and_their_json(small_corpora, tmp_path):
    from typer.testing import CliRunner

    from tests.mix.test_cli import _app

    fin, gen = small_corpora / "fin.jsonl", small_corpora / "gen.jsonl"
    config = tmp_path / "anneal.yaml"
    config.write_text(
        f"sources:\n  fin: {{paths: {fin}, max_repeats: 3}}\n  gen: {{paths: {gen}}}\n"
        f"seq_len: 64\nval_fraction: 0.2\ntokenizer: {GPT2}\nphases:\n"
        "  - {name: main, share: 0.9, ratios: {fin: 0.4, gen: 0.6}}\n"
        "  - {name: anneal, share: 0.1, ratios: {fin: 0.8, gen: 0.2}}\n"
    )
    table = CliRunner().invoke(_app(), ["mix", str(config), "--dry-run"])
    assert table.exit_code == 0, table.output
    assert "mix phases" in table.output
    assert "[1,187, 1,319)" in table.output and "0.80 -> 0.8030" in table.output  # 106 / 132
    as_json = CliRunner().invoke(_app(), ["mix", str(config), "--dry-run", "--json"])
    phases = json.loads(as_json.stdout)["phases"]
    assert [(p["name"], p["start"], p["stop"], p["num_tokens"]) for p in phases] == [
        ("main", 0, 1187, 1187 * 64),
        ("anneal", 1187, 1319, 132 * 64),
    ]
    assert phases[1]["sources"]["fin"] == {
        "target_ratio": 0.8,
        "sequences": 106,
        "realized_ratio": 0.803030303,
    }
