"""model.new_token_init fit through pretraining's own path (prepare_model), and the one rule for the
number of embedding rows (recipe model.pad_vocab_to_multiple_of against the map's pad_to_multiple_of).
The bits-per-byte effect on three base kinds: tests/tokenizer/test_extend_init.py."""

import json

import pytest
import torch

from domainlm.errors import ConfigError
from domainlm.pretrain.config import load_recipe
from domainlm.pretrain.loop import prepare_model
from domainlm.pretrain.model import TokenIds
from domainlm.pretrain.vocab_init import fit_steps, load_added_tokens_map, rows_multiple

from .test_vocab_init import BASE_VOCAB, TOKENS, piece_mean, tiny_llama, write_map

IDS = TokenIds(vocab_size=43, eos_token_id=3, pad_token_id=0)


def recipe_for(tmp_path, *extra, map_extra=None):
    """(base model, recipe) continuing from the base with the 3 tokens of TOKENS added."""
    base = tiny_llama(tied=False)
    base.save_pretrained(tmp_path / "base")
    mapping = write_map(tmp_path, **(map_extra or {}))
    overrides = [f"model.init_from={tmp_path / 'base'}", f"model.added_tokens_map={mapping}"]
    return base, load_recipe("tiny_cpu", [*overrides, *extra])


def sequences(count: int = 64, seq_len: int = 16) -> list[torch.Tensor]:
    """Random ids of the extended vocabulary: the new ids (40-42) occur, so their rows get gradients."""
    generator = torch.Generator().manual_seed(0)
    return list(torch.randint(0, 43, (count, seq_len), generator=generator))


def test_fit_moves_only_the_new_rows_and_lowers_their_loss(tmp_path, caplog):
    base, recipe = recipe_for(tmp_path, "model.new_token_fit_steps=20", "train.micro_batch_size=4")
    _, mean_recipe = recipe_for(tmp_path, "model.new_token_init=mean")
    caplog.set_level("INFO", logger="domainlm.pretrain.vocab_init")
    mean = prepare_model(mean_recipe, IDS, 16)
    rng = torch.get_rng_state()
    fitted = prepare_model(recipe, IDS, 16, sequences())
    assert torch.equal(torch.get_rng_state(), rng)  # the fit draws nothing from the training stream
    for (name, new), old in zip(fitted.named_parameters(), base.parameters(), strict=True):
        assert torch.equal(new[: old.shape[0]], old), name  # base weights bit-identical
        assert new.requires_grad, name  # everything trainable again for pretraining
    for weight in ("get_input_embeddings", "get_output_embeddings"):
        fit_rows, mean_rows = getattr(fitted, weight)().weight, getattr(mean, weight)().weight
        assert not torch.equal(fit_rows[BASE_VOCAB:], mean_rows[BASE_VOCAB:])
        assert torch.equal(mean_rows[41], piece_mean(getattr(base, weight)().weight, TOKENS[1]["base_ids"]))
    assert fitted.training == mean.training  # the mode from_pretrained left is restored
    losses = [r.message for r in caplog.records if "fitted the 3 new token rows in 20 steps" in r.message]
    first, last = (float(x) for x in losses[0].split("loss ")[1].split(" -> "))
    assert last < first


def test_fit_steps_read_the_first_sequences_in_order_and_wrap():
    rows = [torch.full((16,), k) for k in range(10)]
    steps = list(fit_steps(rows, steps=3, micro_batch_size=4))
    assert [step[:, 0].tolist() for step in steps] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 1]]
    assert steps[0].shape == (4, 16)


def test_fit_needs_the_training_sequences_and_a_causal_model(tmp_path):
    _, recipe = recipe_for(tmp_path, "model.new_token_init=fit")
    with pytest.raises(
        ConfigError,
        match=r"model.new_token_init: fit reads the run's training sequences.*new_token_init: mean",
    ):
        prepare_model(recipe, IDS, 16)
    with pytest.raises(
        ConfigError, match=r"model: .*new_token_init: fit scores next-token prediction, which arch 'bert'"
    ):
        load_recipe("tiny_cpu", ["model.arch=bert", "objective.name=mlm", "model.new_token_init=fit"])
    bert = load_recipe("tiny_cpu", ["model.arch=bert", "objective.name=mlm"])
    assert bert.model.new_token_init is None  # resolved to mean for encoders (vocab_init.new_token_method)


def test_rows_multiple_one_rule_for_recipe_and_map(tmp_path):
    recorded = load_added_tokens_map(write_map(tmp_path, pad_to_multiple_of=16))
    plain = load_added_tokens_map(write_map(tmp_path))
    assert rows_multiple(load_recipe("tiny_cpu").model, recorded) == 16
    assert rows_multiple(load_recipe("tiny_cpu", ["model.pad_vocab_to_multiple_of=16"]).model, recorded) == 16
    assert rows_multiple(load_recipe("tiny_cpu", ["model.pad_vocab_to_multiple_of=32"]).model, plain) == 32
    with pytest.raises(
        ConfigError,
        match=r"model.pad_vocab_to_multiple_of 32 != pad_to_multiple_of 16 recorded by `tokenizer extend --pad-to-multiple-of` in .*added_tokens_map.json",
    ):
        rows_multiple(load_recipe("tiny_cpu", ["model.pad_vocab_to_multiple_of=32"]).model, recorded)
    _, recipe = recipe_for(tmp_path, "model.new_token_init=mean", map_extra={"pad_to_multiple_of": 16})
    model = prepare_model(recipe, IDS, 16)
    assert model.get_input_embeddings().weight.shape[0] == model.get_output_embeddings().weight.shape[0] == 48
    bad = json.loads((tmp_path / "added_tokens_map.json").read_text()) | {"pad_to_multiple_of": 0}
    (tmp_path / "added_tokens_map.json").write_text(json.dumps(bad))
    with pytest.raises(Exception, match=r"field pad_to_multiple_of: Input should be greater than 0"):
        load_added_tokens_map(tmp_path / "added_tokens_map.json")
