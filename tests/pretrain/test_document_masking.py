"""data.document_masking: a packed document's logits do not depend on what it is packed after."""

from __future__ import annotations

import pytest
import torch

from domainlm.errors import ConfigError
from domainlm.pretrain.config import ModelConfig, recipe_from_dict
from domainlm.pretrain.model import TokenIds, build_model
from domainlm.pretrain.objectives import (
    CausalLM,
    SpecialTokenIds,
    build_objective,
    document_position_ids,
    token_losses,
)
from tests.pretrain.conftest import TINY_RECIPE

EOS = 3
SEQ_LEN = 24


def tiny_llama(attention: str = "sdpa") -> torch.nn.Module:
    cfg = ModelConfig(
        arch="llama", hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, attention=attention
    )
    return build_model(cfg, TokenIds(vocab_size=50, eos_token_id=EOS, pad_token_id=0), SEQ_LEN, seed=0).eval()


def documents() -> tuple[torch.Tensor, torch.Tensor]:
    """Two documents, each ending with EOS: a (9 tokens) then b (15 tokens) fill one 24-token row."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randint(4, 50, (9,), generator=generator)
    b = torch.randint(4, 50, (15,), generator=generator)
    a[-1] = b[-1] = EOS
    return a, b


def test_positions_restart_after_each_eos():
    batch = torch.tensor([[5, 6, EOS, 7, EOS, EOS, 8, 9], [EOS, 5, 6, 7, 8, 9, 10, 11]])
    assert document_position_ids(batch, EOS).tolist() == [[0, 1, 2, 0, 1, 0, 0, 1], [0, 0, 1, 2, 3, 4, 5, 6]]


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_a_document_has_the_same_logits_packed_after_another_or_alone(attention):
    model, (a, b) = tiny_llama(attention), documents()
    masked = CausalLM(seq_len=SEQ_LEN, seed=0, document_masking=True, eos_id=EOS)
    plain = CausalLM(seq_len=SEQ_LEN, seed=0)
    packed = torch.cat([a, b])[None]
    with torch.no_grad():
        alone = model(input_ids=b[None]).logits[0]
        inputs = masked(packed, 0, 0)
        inputs.pop("labels")
        after_a = model(**inputs).logits[0, len(a) :]
        unmasked = plain(packed, 0, 0)
        unmasked.pop("labels")
        leaked = model(**unmasked).logits[0, len(a) :]
    torch.testing.assert_close(after_a, alone, rtol=0, atol=1e-5)
    assert (leaked - alone).abs().max() > 1e-2  # without masking, b attends to a


def test_flattened_layout_for_flash_attention_gives_the_same_losses():
    """flash_attention_2 gets the micro-batch as one [1, B*T] row; checked here on SDPA, which reads the
    same restarting position ids as packed documents (flash-attn itself needs a GPU)."""
    model, (a, b) = tiny_llama(), documents()
    batch = torch.stack([torch.cat([a, b]), torch.cat([b[:12], a, b[:3]])])
    rows = CausalLM(seq_len=SEQ_LEN, seed=0, document_masking=True, eos_id=EOS)
    flat = CausalLM(seq_len=SEQ_LEN, seed=0, document_masking=True, eos_id=EOS, flatten=True)
    per_row, flattened = rows(batch, 0, 0), flat(batch, 0, 0)
    assert flattened["input_ids"].shape == (1, 2 * SEQ_LEN)
    with torch.no_grad():
        nll_rows, scored_rows = token_losses(
            model(input_ids=per_row["input_ids"], position_ids=per_row["position_ids"]).logits,
            per_row["labels"],
            True,
        )
        nll_flat, scored_flat = token_losses(
            model(input_ids=flattened["input_ids"], position_ids=flattened["position_ids"]).logits,
            flattened["labels"],
            True,
        )
    assert torch.equal(scored_flat.view(2, SEQ_LEN), scored_rows)
    torch.testing.assert_close(nll_flat.view(2, SEQ_LEN), nll_rows, rtol=0, atol=1e-5)


def test_token_losses_match_the_model_loss():
    model, (a, b) = tiny_llama(), documents()
    batch = torch.cat([a, b])[None]
    with torch.no_grad():
        out = model(input_ids=batch, labels=batch)
        nll, scored = token_losses(out.logits, batch, causal=True)
    assert scored.sum() == SEQ_LEN - 1
    assert (nll.sum() / scored.sum()).item() == pytest.approx(out.loss.item(), abs=1e-6)


def test_flash_attention_objective_flattens_and_masking_is_causal_only(tiny_data):
    special = SpecialTokenIds(eos=EOS)
    objective = build_objective(
        "causal", vocab_size=50, special=special, seq_len=SEQ_LEN, seed=0, document_masking=True,
        attention="flash_attention_2",
    )  # fmt: skip
    assert objective.flatten and objective.eos_id == EOS
    bert = {**TINY_RECIPE, "model": {"arch": "bert"}, "objective": {"name": "mlm"}}
    with pytest.raises(
        ConfigError, match=r"data.document_masking applies to the causal objective, not 'mlm'"
    ):
        recipe_from_dict({**bert, "data": {"mix": str(tiny_data[1]), "document_masking": True}})
    with pytest.raises(ConfigError, match=r"data.document_masking: the tokenizer has no EOS token"):
        CausalLM(seq_len=SEQ_LEN, seed=0, document_masking=True)
