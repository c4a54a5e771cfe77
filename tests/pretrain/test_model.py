"""Model builders (Llama / BERT / RoBERTa / T5 from configs), FLOP-counting params, and continued
pretraining from a local checkpoint with vocabulary extension (new rows = mean of their pieces)."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoTokenizer

from domainlm.errors import ConfigError
from domainlm.plan.shapes import make_shape
from domainlm.pretrain.config import ModelConfig, load_recipe
from domainlm.pretrain.loop import prepare_model
from domainlm.pretrain.model import TokenIds, attention_shape, build_model, count_params, matmul_params

IDS = TokenIds(vocab_size=384, eos_token_id=3, pad_token_id=0, bos_token_id=2)


@pytest.mark.parametrize("tied", [False, True])
def test_llama_matches_the_planner_param_count(tied):
    cfg = ModelConfig(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, tie_embeddings=tied)
    model = build_model(cfg, IDS, seq_len=64, seed=0)
    shape = make_shape("llama", 2, 64, 4, 384, num_kv_heads=2, tie_embeddings=tied)
    assert model.config.intermediate_size == shape.ffn_size == 256  # 8/3 x 64 rounded up to 256
    assert count_params(model) == shape.num_params
    assert matmul_params(model) == shape.matmul_params
    assert model.config._attn_implementation == "sdpa"
    assert attention_shape(model) == (2, 64)


@pytest.mark.parametrize(("arch", "family"), [("bert", "bert"), ("roberta", "roberta"), ("t5", "t5")])
def test_other_families_build_and_run(arch, family):
    cfg = ModelConfig(arch=arch, hidden_size=32, num_layers=1, num_heads=2)
    model = build_model(cfg, IDS, seq_len=16, seed=0)
    assert model.config.model_type == family
    batch = torch.randint(10, 384, (2, 16))
    inputs = {"input_ids": batch, "labels": batch}
    if arch == "t5":
        inputs["decoder_input_ids"] = batch
    assert torch.isfinite(model(**inputs).loss)


def test_same_seed_same_weights():
    cfg = ModelConfig(hidden_size=32, num_layers=1, num_heads=2)
    a, b = build_model(cfg, IDS, 16, seed=7), build_model(cfg, IDS, 16, seed=7)
    assert all(
        torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


def test_continued_pretraining_with_vocabulary_extension(tiny_data, tmp_path):
    base_tok = AutoTokenizer.from_pretrained(tiny_data[0])
    base = build_model(ModelConfig(hidden_size=32, num_layers=1, num_heads=2), IDS, 16, seed=3)
    base.save_pretrained(tmp_path / "base")
    # An extended tokenizer (what `domainlm tokenizer extend` writes): two whole-word legal terms.
    extended = AutoTokenizer.from_pretrained(tiny_data[0])
    words = ["judicata", "estoppel"]
    extended.add_tokens(words)
    extended.save_pretrained(tmp_path / "extended")
    pieces = {w: base_tok(w)["input_ids"] for w in words}
    mapping = {
        "base_tokenizer": str(tiny_data[0]),
        "base_fingerprint": "x",
        "base_vocab_size": len(base_tok),
        "tokens": [
            {"token": w, "id": len(base_tok) + k, "base_ids": pieces[w], "base_pieces": []}
            for k, w in enumerate(words)
        ],
    }
    (tmp_path / "extended" / "added_tokens_map.json").write_text(json.dumps(mapping))
    recipe = load_recipe(
        "tiny_cpu",
        [
            f"model.init_from={tmp_path / 'base'}",
            f"model.added_tokens_map={tmp_path / 'extended' / 'added_tokens_map.json'}",
            "model.new_token_init=mean",  # the rows checked below; fit: tests/pretrain/test_vocab_init.py
        ],
    )
    model = prepare_model(recipe, TokenIds(vocab_size=386, eos_token_id=3, pad_token_id=0), seq_len=16)
    old = base.get_input_embeddings().weight
    new = model.get_input_embeddings().weight
    assert new.shape[0] == len(extended) == 386
    assert torch.equal(new[:384], old)
    for k, word in enumerate(words):
        assert len(pieces[word]) > 1
        assert torch.allclose(new[384 + k], old[pieces[word]].mean(dim=0), atol=1e-7)
    head = model.get_output_embeddings().weight  # untied head: extended the same way
    assert torch.allclose(
        head[385], base.get_output_embeddings().weight[pieces["estoppel"]].mean(dim=0), atol=1e-7
    )


def test_init_from_must_match_the_arch(tmp_path):
    build_model(ModelConfig(hidden_size=32, num_layers=1, num_heads=2), IDS, 16, 0).save_pretrained(
        tmp_path / "m"
    )
    cfg = ModelConfig(arch="bert", init_from=str(tmp_path / "m"))
    with pytest.raises(ConfigError, match="model_type 'llama' does not match model.arch 'bert'"):
        build_model(cfg, IDS, 16, 0)
    with pytest.raises(ConfigError, match="not an HF model directory"):
        build_model(ModelConfig(init_from=str(tmp_path)), IDS, 16, 0)
