"""Objectives: hand-made inputs/labels, masking rates, determinism, and a tiny training run each."""

import pytest
import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import WhitespaceSplit
from transformers import (
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    T5Config,
    T5ForConditionalGeneration,
)

from domainlm.assets import reference_tokenizer
from domainlm.errors import ConfigError, DataError
from domainlm.pretrain.objectives import (
    IGNORE_INDEX,
    OBJECTIVES,
    SpecialTokenIds,
    build_objective,
    compute_input_and_target_lengths,
    make_generator,
    random_spans_noise_mask,
    span_corruption_lengths,
    special_ids_from_tokenizer,
)

PAD, EOS, MASK, CLS, SEP, UNK = 0, 1, 2, 3, 4, 5
BERT_IDS = SpecialTokenIds(
    pad=PAD, eos=EOS, mask=MASK, cls=CLS, sep=SEP, unk=UNK, all_special=(0, 1, 2, 3, 4, 5)
)
SENTINELS = tuple(range(99, 69, -1))  # T5 numbers sentinels downward from the top of the vocabulary
T5_IDS = SpecialTokenIds(pad=PAD, eos=EOS, unk=UNK, sentinels=SENTINELS, all_special=(0, 1, 5, *SENTINELS))


def packed_batch(size: int, length: int, vocab: int = 1000, seed: int = 0) -> torch.Tensor:
    """Random content ids >= 6 with an EOS every 37 tokens, like a packed mix sequence."""
    generator = torch.Generator().manual_seed(seed)
    batch = torch.randint(6, vocab, (size, length), generator=generator)
    batch[:, 36::37] = EOS
    return batch


def mlm(seq_len: int = 128, **kwargs) -> object:
    return build_objective("mlm", vocab_size=1000, special=BERT_IDS, seq_len=seq_len, seed=7, **kwargs)


def span(seq_len: int = 568, **kwargs) -> object:
    return build_objective(
        "span_corruption", vocab_size=100, special=T5_IDS, seq_len=seq_len, seed=7, **kwargs
    )


# --- causal LM ---------------------------------------------------------------------------------


def test_causal_labels_are_the_inputs_and_the_model_shifts():
    objective = build_objective("causal", vocab_size=50, special=SpecialTokenIds(eos=EOS), seq_len=6, seed=0)
    batch = torch.tensor([[7, 8, EOS, 9, 10, 11]], dtype=torch.int32)  # mix shards may hold narrow ints
    out = objective(batch, step=0, rank=0)
    assert set(out) == {"input_ids", "labels"}  # no attention mask: packed rows have no padding
    assert out["input_ids"].dtype == torch.long
    assert out["labels"].tolist() == [[7, 8, EOS, 9, 10, 11]]
    assert out["labels"].data_ptr() != out["input_ids"].data_ptr()
    assert objective.model_family == "causal" and objective.auto_model_class() is AutoModelForCausalLM
    assert objective.encoder_length == 6 and objective.decoder_length is None


def test_wrong_batch_shape_is_a_data_error():
    objective = build_objective("causal", vocab_size=50, special=SpecialTokenIds(), seq_len=8, seed=0)
    with pytest.raises(DataError, match=r"shape \[B, 8\], got \[2, 6\]"):
        objective(torch.zeros(2, 6, dtype=torch.long), 0, 0)


def test_unknown_objective_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown objective 'clm'; use one of causal, mlm, span_corruption"):
        build_objective("clm", vocab_size=10, special=SpecialTokenIds(), seq_len=8, seed=0)
    assert OBJECTIVES == ("causal", "mlm", "span_corruption")


# --- masked LM ---------------------------------------------------------------------------------


def test_mlm_hand_made_example_wraps_cls_sep_and_never_masks_specials():
    objective = mlm(seq_len=10)
    batch = torch.tensor([[11, 12, EOS, 13, 14, 15, 16, 17, 18, 19]])
    out = objective(batch, step=0, rank=0)
    inputs, labels = out["input_ids"][0], out["labels"][0]
    original = torch.tensor([CLS, 11, 12, EOS, 13, 14, 15, 16, 17, SEP])  # the last 2 tokens make room
    selected = labels != IGNORE_INDEX
    assert selected.sum() == 1  # round(0.15 * 7 maskable tokens) = 1
    assert not selected[[0, 3, 9]].any()  # CLS, EOS, SEP
    assert torch.equal(labels[selected], original[selected])
    assert torch.equal(inputs[~selected], original[~selected])
    assert objective.auto_model_class() is AutoModelForMaskedLM


def test_mlm_rates_over_a_big_batch():
    objective = mlm()
    batch = packed_batch(256, 128)
    out = objective(batch, step=3, rank=1)
    inputs, labels = out["input_ids"], out["labels"]
    wrapped = torch.cat([torch.full((256, 1), CLS), batch[:, :126], torch.full((256, 1), SEP)], dim=1)
    special = torch.isin(wrapped, torch.tensor(BERT_IDS.all_special))
    selected = labels != IGNORE_INDEX
    # Exactly round(15%) of each row's maskable tokens, like BERT's create_pretraining_data.
    expected = torch.round((~special).sum(dim=1) * 0.15)
    assert torch.equal(selected.sum(dim=1), expected.to(torch.long))
    assert not (selected & special).any()
    assert torch.equal(labels[selected], wrapped[selected])
    assert torch.equal(inputs[~selected], wrapped[~selected])
    num = selected.sum().item()
    masked = (inputs == MASK) & selected
    randomized = selected & ~masked & (inputs != wrapped)
    kept = selected & (inputs == wrapped)
    assert masked.sum().item() / num == pytest.approx(0.8, abs=0.02)
    # A random draw equals the original 1 time in 994, so "randomized" is 10% x 993/994.
    assert randomized.sum().item() / num == pytest.approx(0.1, abs=0.015)
    assert kept.sum().item() / num == pytest.approx(0.1, abs=0.015)
    assert not torch.isin(inputs[randomized], torch.tensor(BERT_IDS.all_special)).any()
    assert inputs[randomized].min() >= 6 and inputs[randomized].max() < 1000


def test_mlm_is_deterministic_per_seed_step_and_rank():
    batch = packed_batch(4, 128)
    first = mlm()(batch, step=5, rank=0)
    again = mlm()(batch, step=5, rank=0)
    assert all(torch.equal(first[key], again[key]) for key in first)
    for step, rank in ((6, 0), (5, 1)):
        other = mlm()(batch, step=step, rank=rank)
        assert not torch.equal(first["labels"], other["labels"])
    other_seed = build_objective("mlm", vocab_size=1000, special=BERT_IDS, seq_len=128, seed=8)(batch, 5, 0)
    assert not torch.equal(first["labels"], other_seed["labels"])


def test_mlm_wrapping_with_cls_only_and_without():
    roberta_like = SpecialTokenIds(pad=PAD, mask=MASK, cls=CLS, all_special=(0, 2, 3))
    objective = build_objective("mlm", vocab_size=100, special=roberta_like, seq_len=5, seed=0)
    assert objective.wrap_with_cls_sep(torch.tensor([[10, 11, 12, 13, 14]])).tolist() == [
        [CLS, 10, 11, 12, 13]
    ]
    assert mlm(seq_len=5).wrap_with_cls_sep(torch.tensor([[10, 11, 12, 13, 14]])).tolist() == [
        [CLS, 10, 11, 12, SEP]
    ]
    plain = build_objective("mlm", vocab_size=100, special=SpecialTokenIds(mask=MASK), seq_len=5, seed=0)
    assert plain.wrap_with_cls_sep(torch.tensor([[10, 11, 12, 13, 14]])).tolist() == [[10, 11, 12, 13, 14]]
    # A domainlm tokenizer has <s>/</s> but no CLS/SEP: they play that role, as in RoBERTa.
    bos, eos = 6, 7
    domain = SpecialTokenIds(bos=bos, eos=eos, mask=MASK, all_special=(bos, eos, MASK))
    objective = build_objective("mlm", vocab_size=100, special=domain, seq_len=5, seed=0)
    assert objective.wrap_with_cls_sep(torch.tensor([[10, 11, 12, 13, 14]])).tolist() == [
        [bos, 10, 11, 12, eos]
    ]


def test_mlm_needs_a_mask_token_and_a_sane_probability():
    with pytest.raises(ConfigError, match="objective mlm: the tokenizer has no mask token"):
        build_objective("mlm", vocab_size=100, special=SpecialTokenIds(pad=0), seq_len=8, seed=0)
    with pytest.raises(ConfigError, match="mlm_probability 1.5 is outside"):
        mlm(mlm_probability=1.5)


# --- span corruption ---------------------------------------------------------------------------


def test_t5_lengths_match_the_reference():
    # T5 pretrains with 512 encoder tokens cut from 568 raw ones, targets of 114 (run_t5_mlm_flax.py).
    assert compute_input_and_target_lengths(512) == (568, 114)
    assert span_corruption_lengths(568) == (512, 114)
    objective = span()
    assert (objective.encoder_length, objective.decoder_length) == (512, 114)
    assert objective.model_family == "seq2seq" and objective.auto_model_class() is AutoModelForSeq2SeqLM


def test_span_corruption_hand_made_example():
    objective = span(seq_len=40)  # round(6.0) = 6 noise tokens in round(6 / 3) = 2 spans
    tokens = torch.arange(100, 140)[None]
    noise = torch.zeros(1, 40, dtype=torch.bool)
    noise[0, 5:8] = noise[0, 20:23] = True
    out = objective.corrupt(tokens, noise)
    s0, s1 = SENTINELS[:2]
    expected_inputs = [*range(100, 105), s0, *range(108, 120), s1, *range(123, 140), EOS]
    assert out["input_ids"].tolist() == [expected_inputs]
    assert out["labels"].tolist() == [[s0, 105, 106, 107, s1, 120, 121, 122, EOS]]
    assert out["decoder_input_ids"].tolist() == [[PAD, s0, 105, 106, 107, s1, 120, 121, 122]]
    assert (objective.encoder_length, objective.decoder_length) == (37, 9)


def reconstruct(inputs: list[int], labels: list[int]) -> list[int]:
    """Put each sentinel's span from the target back in place of the sentinel in the input."""
    spans, current = {}, None
    for token in labels[:-1]:
        if token in SENTINELS:
            current = spans.setdefault(token, [])
        else:
            current.append(token)
    out = []
    for token in inputs[:-1]:
        out.extend(spans[token] if token in SENTINELS else [token])
    return out


def test_span_corruption_reconstructs_with_fixed_shapes_and_t5_statistics():
    objective = span()
    batch = packed_batch(64, 568, vocab=70)  # content ids stay below the sentinels (70..99)
    out = objective(batch, step=2, rank=0)
    assert out["input_ids"].shape == (64, 512)
    assert out["labels"].shape == out["decoder_input_ids"].shape == (64, 114)
    assert (out["input_ids"][:, -1] == EOS).all() and (out["labels"][:, -1] == EOS).all()
    for row in range(64):
        assert reconstruct(out["input_ids"][row].tolist(), out["labels"][row].tolist()) == batch[row].tolist()
    # 85 noise tokens (15% of 568) in 28 spans per row; the span lengths vary around the mean.
    noise = random_spans_noise_mask(500, 568, make_generator(7, 0, 0))
    assert (noise.sum(dim=1) == 85).all()
    starts = noise & ~torch.nn.functional.pad(noise[:, :-1], (1, 0))
    assert (starts.sum(dim=1) == 28).all()
    assert noise.float().mean().item() == pytest.approx(0.15, abs=0.001)
    assert pytest.approx(3.0, abs=0.05) == (85 / 28)
    assert not noise[:, 0].any()  # T5's segmentation starts with a non-noise span
    # Spans are not all of length 3: the segmentation is random (a noise span of 1 appears).
    run_ends = noise & ~torch.nn.functional.pad(noise[:, 1:], (0, 1))
    single = (starts & run_ends).sum().item()
    assert single > 0
    # Every position may be noised except the first: the mask is spread over the sequence.
    assert noise[:, 1:].any(dim=0).all()


def test_span_corruption_is_deterministic_and_differs_by_step():
    batch = packed_batch(2, 568, vocab=70)
    first, again, other = span()(batch, 1, 0), span()(batch, 1, 0), span()(batch, 2, 0)
    assert torch.equal(first["input_ids"], again["input_ids"])
    assert not torch.equal(first["input_ids"], other["input_ids"])


def test_span_corruption_needs_sentinels_eos_and_pad():
    no_sentinels = SpecialTokenIds(pad=PAD, eos=EOS)
    with pytest.raises(
        ConfigError, match="the tokenizer has no sentinel tokens; train one with --sentinels N"
    ):
        build_objective("span_corruption", vocab_size=100, special=no_sentinels, seq_len=64, seed=0)
    few = SpecialTokenIds(pad=PAD, eos=EOS, sentinels=(99, 98))
    with pytest.raises(ConfigError, match="has 2 sentinel tokens but .* 568-token sequences needs 28"):
        build_objective("span_corruption", vocab_size=100, special=few, seq_len=568, seed=0)
    with pytest.raises(ConfigError, match="no EOS token"):
        build_objective(
            "span_corruption", vocab_size=100, special=SpecialTokenIds(sentinels=(99,)), seq_len=8, seed=0
        )
    with pytest.raises(ConfigError, match="needs a pad token"):
        build_objective(
            "span_corruption",
            vocab_size=100,
            special=SpecialTokenIds(eos=EOS, sentinels=(99,)),
            seq_len=8,
            seed=0,
        )


# --- special ids from a tokenizer --------------------------------------------------------------


def test_special_ids_from_tokenizer_finds_sentinels_in_order():
    words = ["<pad>", "</s>", "<unk>", "<extra_id_1>", "<extra_id_0>", "<extra_id_3>", "a", "b"]
    backend = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    special = special_ids_from_tokenizer(tokenizer)
    assert (special.pad, special.eos, special.unk, special.mask, special.cls) == (0, 1, 2, None, None)
    assert special.sentinels == (4, 3)  # <extra_id_3> is cut off by the missing <extra_id_2>
    assert set(special.special_set()) == {0, 1, 2, 3, 4}


def test_special_ids_of_the_shipped_bert_tokenizer():
    special = special_ids_from_tokenizer(
        AutoTokenizer.from_pretrained(reference_tokenizer("bert-base-uncased"))
    )
    assert (special.pad, special.unk, special.cls, special.sep, special.mask) == (0, 100, 101, 102, 103)
    assert special.sentinels == () and special.special_set() == [0, 100, 101, 102, 103]


# --- tiny training runs (CPU, no DeepSpeed) ----------------------------------------------------


def train_losses(model: torch.nn.Module, objective, batch: torch.Tensor, steps: int = 30) -> list[float]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for step in range(steps):
        loss = model(**objective(batch, step=step, rank=0)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


SMALL = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64}


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from intra-op threads, and spinning threads crawl on a busy 2-core box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", OBJECTIVES)
def test_each_objective_trains_a_tiny_model(name, one_thread):
    torch.manual_seed(0)
    # Learnable text: each row counts up from its own start, so every token follows from its neighbours.
    batch = (torch.arange(8)[:, None] * 7 + torch.arange(32)[None]) % 60 + 6
    if name == "causal":
        config = LlamaConfig(vocab_size=100, num_hidden_layers=2, num_key_value_heads=2, **SMALL)
        model, special = LlamaForCausalLM(config), SpecialTokenIds(eos=EOS)
    elif name == "mlm":
        model, special = BertForMaskedLM(BertConfig(vocab_size=100, num_hidden_layers=2, **SMALL)), BERT_IDS
    else:
        config = T5Config(
            vocab_size=100,
            d_model=32,
            d_kv=16,
            d_ff=64,
            num_layers=2,
            num_heads=2,
            decoder_start_token_id=PAD,
        )
        model, special = T5ForConditionalGeneration(config), T5_IDS
    objective = build_objective(name, vocab_size=100, special=special, seq_len=32, seed=0)
    losses = train_losses(model, objective, batch)
    assert sum(losses[-5:]) / 5 < 0.85 * sum(losses[:5]) / 5, losses
