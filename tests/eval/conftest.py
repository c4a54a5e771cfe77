"""Tiny local models (Llama, GPT-2, BERT, T5) over a small byte-level BPE tokenizer, built in tmp dirs.

Nothing is downloaded: the tokenizer is trained here on a few sentences, the models are random
initializations from transformers configs. A 300-token vocabulary keeps every forward pass cheap.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from domainlm.testing.mixes import source_entry, write_manifest

TEXTS = [
    "The court held that res judicata barred the second action.",
    "Net income rose 12% to $4.1 million; the board declared a dividend of 0.25 per share.",
    "Patient presented with dyspnea and was given 5 mg q.i.d. for ten days.",
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, "
    "must be in want of a wife.",
]
SPECIALS = {
    "bos_token": "<s>",
    "eos_token": "</s>",
    "pad_token": "<pad>",
    "unk_token": "<unk>",
    "mask_token": "<mask>",
}
NUM_SENTINELS = 20


@pytest.fixture(scope="package", autouse=True)
def _one_torch_thread():
    """These models are tiny: a second thread only adds synchronisation (and, on a busy machine,
    spin-waiting that made each forward ~50x slower). Restored after the eval tests."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def build_tokenizer(out: Path):
    """Byte-level BPE (every string is representable) with BOS/EOS/PAD/MASK and T5 sentinels."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    sentinels = [f"<extra_id_{i}>" for i in range(NUM_SENTINELS)]
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=[*SPECIALS.values(), *sentinels],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(TEXTS * 3, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw, cls_token="<s>", sep_token="</s>", extra_special_tokens=sentinels, **SPECIALS
    )
    tokenizer.save_pretrained(out)
    return tokenizer


def _save(model, tokenizer, out: Path) -> Path:
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory):
    return build_tokenizer(tmp_path_factory.mktemp("tok"))


def _ids(tokenizer) -> dict:
    return {
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory, tokenizer) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=64, bos_token_id=tokenizer.bos_token_id, **_ids(tokenizer),
    )  # fmt: skip
    return _save(LlamaForCausalLM(config), tokenizer, tmp_path_factory.mktemp("llama"))


@pytest.fixture(scope="session")
def gpt2_dir(tmp_path_factory, tokenizer) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(1)
    config = GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=48, bos_token_id=tokenizer.bos_token_id,
                        **_ids(tokenizer))  # fmt: skip
    return _save(GPT2LMHeadModel(config), tokenizer, tmp_path_factory.mktemp("gpt2"))


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory, tokenizer) -> Path:
    import torch
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(2)
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                        max_position_embeddings=40, **_ids(tokenizer))  # fmt: skip
    return _save(BertForMaskedLM(config), tokenizer, tmp_path_factory.mktemp("bert"))


@pytest.fixture(scope="session")
def t5_dir(tmp_path_factory, tokenizer) -> Path:
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(3)
    config = T5Config(d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, decoder_start_token_id=tokenizer.pad_token_id,
                      **_ids(tokenizer))  # fmt: skip
    return _save(T5ForConditionalGeneration(config), tokenizer, tmp_path_factory.mktemp("t5"))


def write_jsonl_gz(path: Path, texts: list[str], source: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"text": t, "source": source, "id": f"{source}-{i}"}) for i, t in enumerate(texts)]
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return path


@pytest.fixture()
def mix_dir(tmp_path) -> Path:
    """A minimal contract-A mix directory: manifest + held-out text of two sources."""
    root = tmp_path / "mix"
    sources = {"legal": TEXTS[:1] * 2, "finance": TEXTS[1:2]}
    for name, texts in sources.items():
        write_jsonl_gz(root / "val" / f"{name}.jsonl.gz", texts, name)
    return write_manifest(root, [source_entry(name, documents=len(texts)) for name, texts in sources.items()])
