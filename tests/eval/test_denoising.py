"""Masked and span-corruption rows: every text token is scored exactly once, deterministically."""

from types import SimpleNamespace

import numpy as np
import pytest

from domainlm.errors import DataError
from domainlm.eval.denoising import NUM_PASSES, masked_rows, sentinel_ids, seq2seq_rows
from domainlm.losses import IGNORE_INDEX

from .conftest import NUM_SENTINELS, TEXTS


def _text_ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_masked_rows_hide_each_token_exactly_once(tokenizer):
    text = TEXTS[3]
    plan = masked_rows(tokenizer, [text], max_length=16, seed=0)
    ids = _text_ids(tokenizer, text)
    assert plan.num_tokens == len(ids)
    hidden = []
    for row in plan.rows:
        inputs, labels, decoder = row.arrays()
        assert decoder is None
        assert inputs[0] == tokenizer.cls_token_id and inputs[-1] == tokenizer.sep_token_id
        masked = np.flatnonzero(labels != IGNORE_INDEX)
        assert (inputs[masked] == tokenizer.mask_token_id).all()
        assert (inputs[labels == IGNORE_INDEX] == row.ids[labels == IGNORE_INDEX]).all()
        assert len(masked) <= -(-(len(row.ids) - 2) // NUM_PASSES)  # about 1/7 (~15%) per pass
        hidden.extend(labels[masked].tolist())
    assert sorted(hidden) == sorted(ids)
    # 14 text tokens per 16-token chunk, 7 passes per chunk
    assert len(plan.rows) == NUM_PASSES * -(-len(ids) // 14)


def test_masking_depends_on_the_seed_only(tokenizer):
    def positions(seed):
        return [row.positions.tolist() for row in masked_rows(tokenizer, TEXTS, 16, seed).rows]

    assert positions(0) == positions(0)
    assert positions(0) != positions(1)


def test_span_corruption_rows_reconstruct_the_text(tokenizer):
    sentinels = sentinel_ids(tokenizer)
    assert len(sentinels) == NUM_SENTINELS
    text = TEXTS[1]
    ids = _text_ids(tokenizer, text)
    plan = seq2seq_rows(tokenizer, [text], max_length=128, seed=0, decoder_start_id=tokenizer.pad_token_id)
    assert plan.num_tokens == len(ids) and len(plan.rows) == NUM_PASSES
    scored = []
    for row in plan.rows:
        inputs, labels, decoder_inputs = row.arrays()
        target = np.concatenate([decoder_inputs[1:], [tokenizer.eos_token_id]])
        assert decoder_inputs[0] == tokenizer.pad_token_id and inputs[-1] == tokenizer.eos_token_id
        # Put each span back in place of its sentinel: the original text comes back.
        spans, current = {}, None
        for token in target[:-1]:
            if token in sentinels:
                current = token
                spans[current] = []
            else:
                spans[current].append(token)
        rebuilt = [t for token in inputs[:-1] for t in (spans[token] if token in sentinels else [token])]
        assert rebuilt == ids
        # Sentinels and EOS are not scored; span tokens are.
        assert (labels[np.isin(target, sentinels)] == IGNORE_INDEX).all() and labels[-1] == IGNORE_INDEX
        scored.extend(labels[labels != IGNORE_INDEX].tolist())
    assert sorted(scored) == sorted(ids)


def test_objectives_need_their_special_tokens():
    with pytest.raises(DataError, match="mask token"):
        masked_rows(SimpleNamespace(mask_token_id=None), TEXTS, 16, 0)
    no_sentinels = SimpleNamespace(unk_token_id=3, convert_tokens_to_ids=lambda token: 3)
    with pytest.raises(DataError, match="sentinel"):
        sentinel_ids(no_sentinels)
