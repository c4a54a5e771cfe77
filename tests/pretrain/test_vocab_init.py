"""Vocabulary extension: new rows are exactly the mean of their base pieces; tying survives; bad maps fail."""

import json
import re

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, LlamaConfig, LlamaForCausalLM

from domainlm.errors import ConfigError, DataError
from domainlm.pretrain.vocab_init import AddedTokensMap, extend_embeddings, load_added_tokens_map

BASE_VOCAB = 40
TOKENS = [
    {"token": "judicata", "id": 40, "base_ids": [12, 34], "base_pieces": ["jud", "icata"]},
    {"token": "estoppel", "id": 41, "base_ids": [5, 6, 7], "base_pieces": ["est", "op", "pel"]},
    {"token": "tort", "id": 42, "base_ids": [9], "base_pieces": ["tort"]},
]


def tiny_llama(tied: bool, dtype: torch.dtype = torch.float32) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=BASE_VOCAB,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        tie_word_embeddings=tied,
    )
    return LlamaForCausalLM(config).to(dtype)


def write_map(tmp_path, tokens=TOKENS, base_vocab_size=BASE_VOCAB, **extra):
    path = tmp_path / "added_tokens_map.json"
    body = {"base_tokenizer": "base", "base_fingerprint": "0" * 64, "base_vocab_size": base_vocab_size}
    path.write_text(json.dumps({**body, "tokens": tokens, **extra}), encoding="utf-8")
    return path


def piece_mean(weight: torch.Tensor, ids: list[int]) -> torch.Tensor:
    return weight[ids].double().mean(dim=0).to(weight.dtype)


@pytest.mark.parametrize("tied", [True, False])
def test_new_rows_are_the_mean_of_their_pieces(tmp_path, tied):
    model = tiny_llama(tied)
    old_in = model.get_input_embeddings().weight.detach().clone()
    old_out = model.get_output_embeddings().weight.detach().clone()
    rng_before = torch.get_rng_state()
    rows = extend_embeddings(model, write_map(tmp_path), vocab_size=43)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the caller's random stream is untouched
    new_in, new_out = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    assert rows == 43 and model.config.vocab_size == 43 and new_in.shape == new_out.shape == (43, 16)
    assert (new_out is new_in) == tied
    assert torch.equal(new_in[:BASE_VOCAB], old_in) and torch.equal(new_out[:BASE_VOCAB], old_out)
    for entry in TOKENS:
        assert torch.equal(new_in[entry["id"]], piece_mean(old_in, entry["base_ids"]))
        assert torch.equal(new_out[entry["id"]], piece_mean(old_out, entry["base_ids"]))
    assert torch.equal(new_in[42], old_in[9])  # a single piece is copied as is
    # Hand check: row 40 is (row 12 + row 34) / 2.
    torch.testing.assert_close(new_in[40], (old_in[12] + old_in[34]) / 2, rtol=0, atol=1e-7)
    loss = model(torch.tensor([[40, 41, 42, 3]]), labels=torch.tensor([[40, 41, 42, 3]])).loss
    loss.backward()  # the resized parameters are trainable
    assert model.get_input_embeddings().weight.grad[41].abs().sum() > 0


def test_padding_rows_get_the_mean_of_the_base_rows(tmp_path):
    model = tiny_llama(tied=False)
    old_in = model.get_input_embeddings().weight.detach().clone()
    rows = extend_embeddings(model, write_map(tmp_path), pad_to_multiple_of=16)
    weight = model.get_input_embeddings().weight
    assert (
        rows == 48 and model.config.vocab_size == 48 and model.get_output_embeddings().weight.shape[0] == 48
    )
    assert torch.equal(weight[40], piece_mean(old_in, [12, 34]))
    expected = old_in.double().mean(dim=0).float()
    assert all(torch.equal(weight[row], expected) for row in range(43, 48))


def test_bfloat16_rows_are_rounded_once(tmp_path):
    model = tiny_llama(tied=True, dtype=torch.bfloat16)
    old = model.get_input_embeddings().weight.detach().clone()
    extend_embeddings(model, write_map(tmp_path))
    weight = model.get_input_embeddings().weight
    assert weight.dtype == torch.bfloat16
    assert torch.equal(weight[41], old[[5, 6, 7]].double().mean(dim=0).to(torch.bfloat16))


def test_output_bias_of_new_tokens_is_the_mean_of_their_pieces():
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=BASE_VOCAB,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
    )
    model = BertForMaskedLM(config)
    with torch.no_grad():
        model.cls.predictions.bias.normal_()
    old_bias = model.cls.predictions.bias.detach().clone()
    mapping = AddedTokensMap(base_vocab_size=BASE_VOCAB, tokens=TOKENS)
    extend_embeddings(model, mapping)
    bias = model.cls.predictions.decoder.bias
    assert bias is model.cls.predictions.bias and bias.shape == (43,)
    assert torch.equal(bias[41], old_bias[[5, 6, 7]].double().mean().float())
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # BERT ties


def test_an_empty_map_changes_nothing(tmp_path):
    model = tiny_llama(tied=True)
    old = model.get_input_embeddings().weight.detach().clone()
    assert extend_embeddings(model, write_map(tmp_path, tokens=[])) == BASE_VOCAB
    assert torch.equal(model.get_input_embeddings().weight, old)


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        (
            [TOKENS[0], {**TOKENS[2], "id": 43}],
            r"token 'tort' has id 43, expected 41 \(new ids must run contiguously from base_vocab_size 40\)",
        ),
        (
            [{**TOKENS[0], "base_ids": [12, 40]}],
            r"token 'judicata' has base_ids \[40\] outside the base vocabulary",
        ),
        ([{**TOKENS[0], "base_ids": [-1]}], r"base_ids \[-1\] outside the base vocabulary \[0, 40\)"),
        ([{**TOKENS[0], "base_ids": []}], "token 'judicata' has no base_ids"),
        ([{"token": "x", "id": 40}], "field tokens.0.base_ids: Field required"),
        ([{**TOKENS[0], "id": "forty"}], "field tokens.0.id: Input should be a valid integer"),
    ],
)
def test_bad_maps_name_the_file(tmp_path, tokens, message):
    path = write_map(tmp_path, tokens=tokens)
    with pytest.raises(
        DataError,
        match=rf"^{re.escape(str(path))}: .*{message}.*; regenerate it with `domainlm tokenizer extend`",
    ):
        load_added_tokens_map(path)


def test_map_for_another_model_or_tokenizer_is_refused(tmp_path):
    path = write_map(tmp_path, base_vocab_size=50, tokens=[{**TOKENS[0], "id": 50}])
    with pytest.raises(DataError, match=r"base_vocab_size is 50 but the model has 40 embedding rows"):
        extend_embeddings(tiny_llama(tied=True), path)
    with pytest.raises(DataError, match=r"should have 43 tokens, but it has 44"):
        extend_embeddings(tiny_llama(tied=True), write_map(tmp_path), vocab_size=44)


def test_missing_or_broken_files(tmp_path):
    with pytest.raises(
        DataError, match=r"nope.json: added tokens map not found; run `domainlm tokenizer extend`"
    ):
        load_added_tokens_map(tmp_path / "nope.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(DataError, match=r"broken.json: not valid JSON"):
        load_added_tokens_map(broken)
    other = tmp_path / "list.json"
    other.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(DataError, match=r"list.json: field .*valid dictionary"):
        load_added_tokens_map(other)


def test_map_object_is_validated_too():
    mapping = AddedTokensMap(base_vocab_size=BASE_VOCAB, tokens=[{**TOKENS[0], "id": 41}], source="m.json")
    with pytest.raises(DataError, match="^m.json: token 'judicata' has id 41, expected 40"):
        extend_embeddings(tiny_llama(tied=True), mapping)


@pytest.mark.parametrize("tied", [True, False])
def test_pad_embeddings_rounds_up_and_keeps_the_rows(tied):
    from domainlm.pretrain.vocab_init import pad_embeddings

    model = tiny_llama(tied)
    old = model.get_input_embeddings().weight.detach().clone()
    assert pad_embeddings(model, 16) == 48 and model.config.vocab_size == 48
    weight = model.get_input_embeddings().weight
    assert torch.equal(weight[:40], old)
    assert all(torch.equal(weight[row], old.double().mean(dim=0).float()) for row in range(40, 48))
    assert (model.get_output_embeddings().weight is weight) == tied
    assert model.get_output_embeddings().weight.shape[0] == 48
    assert pad_embeddings(model, 16) == 48 and pad_embeddings(model, 8) == 48  # already a multiple
    with pytest.raises(ValueError, match="pad_to_multiple_of must be >= 1, got 0"):
        pad_embeddings(model, 0)


def test_recipe_pads_the_vocabulary_with_and_without_a_map(tmp_path):
    from domainlm.pretrain.config import load_recipe
    from domainlm.pretrain.loop import prepare_model
    from domainlm.pretrain.model import TokenIds

    ids = TokenIds(vocab_size=43, eos_token_id=3, pad_token_id=0)
    scratch = prepare_model(load_recipe("tiny_cpu", ["model.pad_vocab_to_multiple_of=64"]), ids, seq_len=16)
    assert scratch.get_input_embeddings().weight.shape[0] == 64 and scratch.config.vocab_size == 64
    base = tiny_llama(tied=False)
    base.save_pretrained(tmp_path / "base")
    overrides = [f"model.init_from={tmp_path / 'base'}", f"model.added_tokens_map={write_map(tmp_path)}"]
    overrides += ["model.new_token_init=mean"]
    extended = prepare_model(
        load_recipe("tiny_cpu", [*overrides, "model.pad_vocab_to_multiple_of=32"]), ids, 16
    )
    weight = extended.get_input_embeddings().weight
    assert weight.shape[0] == 64 and extended.get_output_embeddings().weight.shape[0] == 64
    assert torch.equal(weight[41], piece_mean(base.get_input_embeddings().weight, [5, 6, 7]))
    with pytest.raises(ConfigError, match="model.pad_vocab_to_multiple_of: .*greater than 0"):
        load_recipe("tiny_cpu", ["model.pad_vocab_to_multiple_of=0"])


def test_padded_rows_are_never_produced_by_the_tokenizer(tmp_path):
    """The tokenizer's ids stop at its vocab size: rows past it are only ever outputs."""
    from transformers import AutoTokenizer

    from domainlm.assets import reference_tokenizer
    from domainlm.pretrain.vocab_init import pad_embeddings

    tokenizer = AutoTokenizer.from_pretrained(str(reference_tokenizer("gpt2")))
    text = "Licensee shall indemnify 日本 🚀 <|endoftext|> \x00\xff" + "".join(map(chr, range(32, 400)))
    ids = tokenizer(text)["input_ids"] + list(tokenizer.get_vocab().values())
    assert max(ids) == len(tokenizer) - 1 == 50256
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2)  # fmt: skip
    model = LlamaForCausalLM(config)
    assert pad_embeddings(model, 64) == 50304 > max(ids)
