"""vocab.json/merges.txt (GPT-2) and vocab.txt (BERT) -> HF tokenizer directories AutoTokenizer loads.

The shipped baselines arrive as the raw files their packages carried; this script turns each into a
`tokenizer.json` + `tokenizer_config.json` pair once, so every stage loads them the same way
(`AutoTokenizer.from_pretrained(dir)`), with no hub access. Run from the repository root; the
output is committed under domainlm/assets/tokenizers/.
"""

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

ASSETS = Path(__file__).resolve().parent.parent / "domainlm" / "assets" / "tokenizers"


def build_gpt2(folder: Path) -> None:
    tok = Tokenizer(models.BPE.from_file(str(folder / "vocab.json"), str(folder / "merges.txt")))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    assert tok.encode("Hello world").ids == [15496, 995], "GPT-2 reference encoding changed"
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>"
    )
    fast.model_max_length = 1024
    fast.save_pretrained(folder)


def build_bert(folder: Path) -> None:
    tok = Tokenizer(models.WordPiece.from_file(str(folder / "vocab.txt"), unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
    )
    fast.model_max_length = 512
    fast.save_pretrained(folder)


if __name__ == "__main__":
    build_gpt2(ASSETS / "gpt2")
    build_bert(ASSETS / "bert-base-uncased")
    print("wrote", *(p for p in ASSETS.rglob("tokenizer*.json")))
