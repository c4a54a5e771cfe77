"""The in-training held-out eval: every row at any world size, and the same bits per byte as `domainlm eval`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from domainlm.eval.data import load_domains
from domainlm.eval.evaluate import EvalSettings, evaluate
from domainlm.eval.perplexity import causal_rows
from domainlm.losses import summarize_loss
from domainlm.mix.manifest import open_mix
from domainlm.pretrain.config import ModelConfig
from domainlm.pretrain.data import (
    ValRow,
    ValSet,
    causal_val_sets,
    num_val_forwards,
    packed_val_sets,
    rank_batches,
)
from domainlm.pretrain.heldout import _batch_nll
from domainlm.pretrain.model import TokenIds, build_model
from domainlm.pretrain.objectives import CausalLM
from tests.pretrain.conftest import SEQ_LEN


@pytest.mark.parametrize("world_size", [1, 2, 3, 4, 7, 256])
@pytest.mark.parametrize("micro", [1, 3])
def test_every_row_is_scored_once_and_every_rank_runs_the_same_forwards(world_size, micro):
    rows = [ValRow(np.asarray([k, k + 1]), 1) for k in range(13)]  # 13: divisible by none of them but 1
    val = ValSet("legal", rows, 1, 100)
    per_rank = [rank_batches(val, rank, world_size, micro) for rank in range(world_size)]
    assert {len(batches) for batches in per_rank} == {num_val_forwards(13, world_size, micro)}
    scored = [int(row.ids[0]) for batches in per_rank for chunk, live in batches if live for row in chunk]
    assert sorted(scored) == list(range(13))
    padding = [chunk for batches in per_rank for chunk, live in batches if not live]
    assert all(chunk == rows[:1] for chunk in padding)  # padding batches reuse a real row, scoring nothing


def test_held_out_rows_are_domainlm_evals_rows_over_exact_bytes(tiny_data):
    tokenizer_dir, mix_dir = tiny_data
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    sets = causal_val_sets(open_mix(mix_dir), tokenizer, SEQ_LEN, max_sequences=None)
    domains = {domain.name: domain for domain in load_domains([str(mix_dir)])}
    assert [val.name for val in sets] == list(domains) == ["legal", "general"]
    for val in sets:
        domain = domains[val.name]
        plan = causal_rows(tokenizer, domain.texts, SEQ_LEN, SEQ_LEN // 2)
        assert [(list(r.ids), r.num_scored) for r in val.rows] == [
            (list(r.ids), r.num_scored) for r in plan.rows
        ]
        assert val.num_documents == domain.num_documents == 3
        assert val.num_bytes == domain.num_bytes == open_mix(mix_dir).source(val.name).val.bytes


def test_max_sequences_takes_whole_documents(tiny_data):
    tokenizer = AutoTokenizer.from_pretrained(tiny_data[0])
    manifest = open_mix(tiny_data[1])
    (first, *_), full = (
        causal_val_sets(manifest, tokenizer, SEQ_LEN, 1),
        causal_val_sets(manifest, tokenizer, SEQ_LEN, None),
    )
    assert first.num_documents == 1 and len(first.rows) > 1  # one document even past the cap
    assert [list(r.ids) for r in first.rows] == [list(r.ids) for r in full[0].rows[: len(first.rows)]]
    assert first.num_bytes < full[0].num_bytes
    packed = packed_val_sets(manifest, max_sequences=5)
    assert [len(val.rows) for val in packed] == [5, 5] and packed[0].num_bytes is None


class _Engine:
    """What evaluate_sets needs of a DeepSpeed engine: a device and a forward."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model, self.device = model, torch.device("cpu")

    def __call__(self, **inputs):
        return self.model(**inputs)


def test_in_training_bits_per_byte_equals_domainlm_eval(tiny_data, tmp_path):
    """Same model, same held-out set: ranks simulated one after another, summed as the all-reduce does."""
    tokenizer_dir, mix_dir = tiny_data
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    cfg = ModelConfig(arch="llama", hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64)
    ids = TokenIds(len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.bos_token_id)
    model = build_model(cfg, ids, SEQ_LEN, seed=0).eval()
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    sets = causal_val_sets(open_mix(mix_dir), tokenizer, SEQ_LEN, max_sequences=40)
    assert {val.num_documents for val in sets} == {1}
    settings = EvalSettings(max_length=SEQ_LEN, fast_encode=False)
    report = evaluate([str(tmp_path / "model")], load_domains([str(mix_dir)], max_docs=1), settings)
    theirs = {result.domain: result for result in report.results}
    objective, engine = CausalLM(seq_len=SEQ_LEN, seed=0), _Engine(model)
    for world_size in (1, 3):
        for val in sets:
            with torch.no_grad():
                sums = sum(
                    _batch_nll(engine, objective, rows, live, index, rank, tokenizer.pad_token_id)
                    for rank in range(world_size)
                    for index, (rows, live) in enumerate(rank_batches(val, rank, world_size, 4))
                )
            ours = summarize_loss(sums[0].item(), int(sums[1].item()), val.num_bytes)
            assert ours.num_tokens == theirs[val.name].num_tokens
            assert ours.num_bytes == theirs[val.name].num_bytes
            assert abs(ours.bits_per_byte - theirs[val.name].bits_per_byte) < 1e-6, (world_size, val.name)
