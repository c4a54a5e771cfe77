"""Tokenizer training: `domainlm tokenizer train` (its Python entry, minus interpreter start) versus the
training library called directly (`tokenizers` for BPE, SentencePiece for Unigram) with the same
settings on the same corpus, plus the throughput (MB of training text per second) of both, and of
`vocab report`'s measuring pass per tokenizer.

    .venv/bin/python benchmarks/bench_tokenizer.py            # bpe on all four samples, unigram on legal
    .venv/bin/python benchmarks/bench_tokenizer.py --quick    # legal only, one repeat

Both sides stream the same gzip JSON Lines files from disk and write a tokenizer file; ours also
samples by the config, fingerprints the corpora, converts Unigram to a `tokenizers` model and
writes the HF directory + manifest. Each case runs ours and the direct call alternately, `--repeats` times, and
keeps the best time of each (the machine is shared: best-of is the least noisy estimate). Imports
are warmed first: the interpreter start and `import transformers` are a fixed cost of any CLI call.
Prints a table and one final JSON line.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers  # noqa: E402

from domainlm.assets import sample_corpus  # noqa: E402
from domainlm.tokenizer.config import TrainConfig  # noqa: E402
from domainlm.tokenizer.train import train_tokenizer  # noqa: E402

SPECIALS = ["<unk>", "<s>", "</s>", "<pad>"]


def read_texts(domains: list[str]):
    """What a user calling the library directly would write: stream the gzip JSON Lines."""
    for domain in domains:
        with gzip.open(sample_corpus(domain), "rt", encoding="utf-8") as handle:
            for line in handle:
                text = json.loads(line)["text"]
                if text.strip():
                    yield text


def train_direct(model: str, vocab_size: int, domains: list[str], out: Path) -> None:
    """The same trainer and settings as `domainlm tokenizer train`, written by hand against the library:
    `tokenizers` for byte-level BPE, SentencePiece for Unigram."""
    if model == "unigram":
        import sentencepiece as spm

        spm.SentencePieceTrainer.train(
            sentence_iterator=read_texts(domains), model_prefix=str(out / "direct"), model_type="unigram",
            vocab_size=vocab_size, hard_vocab_limit=False, byte_fallback=True, split_digits=True,
            max_sentencepiece_length=16, normalization_rule_name="identity", remove_extra_whitespaces=False,
            add_dummy_prefix=True, allow_whitespace_only_pieces=True, character_coverage=0.9995,
            max_sentence_length=1 << 30, shuffle_input_sentence=False, num_threads=4, unk_id=0, unk_piece="<unk>",
            bos_id=-1, eos_id=-1, pad_id=-1, user_defined_symbols=SPECIALS[1:], minloglevel=2,
        )  # fmt: skip
        return
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)  # fmt: skip
    tok.train_from_iterator(read_texts(domains), trainer)
    tok.save(str(out / "tokenizer.json"))


def train_ours(model: str, vocab_size: int, domains: list[str], out: Path) -> None:
    config = TrainConfig.model_validate(
        {
            "model": model,
            "vocab_size": vocab_size,
            "corpora": [{"name": d, "paths": [str(sample_corpus(d))]} for d in domains],
        }  # fmt: skip
    )
    train_tokenizer(config, out, overwrite=True)


def timed(fn, *args) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        fn(*args, Path(tmp) / "out")
        return time.perf_counter() - start


def _mkdir_then(fn):
    def run(model, vocab, domains, out: Path):
        out.mkdir(parents=True, exist_ok=True) if fn is train_direct else None
        fn(model, vocab, domains, out)
        shutil.rmtree(out, ignore_errors=True)

    return run


def bench_training(cases: list[tuple[str, int, list[str]]], repeats: int) -> list[dict]:
    rows = []
    for model, vocab, domains in cases:
        mb = sum(len(t.encode("utf-8")) for t in read_texts(domains)) / 1e6
        ours, direct = [], []
        for _ in range(repeats):
            direct.append(timed(_mkdir_then(train_direct), model, vocab, domains))
            ours.append(timed(_mkdir_then(train_ours), model, vocab, domains))
        rows.append({"model": model, "vocab_size": vocab, "corpora": "+".join(domains), "mb": round(mb, 2),
                     "direct_s": round(min(direct), 3), "ours_s": round(min(ours), 3),
                     "overhead": round(min(ours) / min(direct) - 1, 4),
                     "ours_mb_per_s": round(mb / min(ours), 3), "direct_mb_per_s": round(mb / min(direct), 3)})  # fmt: skip
    return rows


def bench_report(domains: list[str]) -> list[dict]:
    """MB/s of the coverage measuring pass (encode with offsets + per-word counting) per tokenizer."""
    from domainlm.tokenizer.coverage import load_corpus_sample, measure
    from domainlm.tokenizer.load import load_tokenizer
    from domainlm.tokenizer.resolve import resolve_tokenizer

    samples = [load_corpus_sample(d, sample_corpus(d), 0, 0) for d in domains]
    mb = sum(s.describe()["bytes"] for s in samples) / 1e6
    rows = []
    for name in ("gpt2", "bert-base-uncased"):
        tok = load_tokenizer(*resolve_tokenizer(name))
        start = time.perf_counter()
        for sample in samples:
            measure(tok, sample)
        seconds = time.perf_counter() - start
        rows.append(
            {
                "tokenizer": name,
                "mb": round(mb, 2),
                "seconds": round(seconds, 3),
                "mb_per_s": round(mb / seconds, 3),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="legal only, one repeat")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    everything = ["legal", "finance", "medical", "general"]
    cases = [("bpe", 16000, everything), ("unigram", 8000, ["legal"])]
    if args.quick:
        cases, args.repeats = [("bpe", 8000, ["legal"]), ("unigram", 4000, ["legal"])], 1
    # Both sides start warm: the one-off import of transformers (~2 s, paid by any CLI start) is not training.
    from transformers import PreTrainedTokenizerFast  # noqa: F401

    training = bench_training(cases, args.repeats)
    report = bench_report(["legal"] if args.quick else everything)
    print(
        f"{'model':8} {'vocab':>6} {'corpora':32} {'MB':>6} {'direct s':>9} {'ours s':>8} {'overhead':>9} {'ours MB/s':>10}"
    )
    for r in training:
        print(f"{r['model']:8} {r['vocab_size']:>6} {r['corpora']:32} {r['mb']:>6.2f} {r['direct_s']:>9.2f} "
              f"{r['ours_s']:>8.2f} {r['overhead']:>9.1%} {r['ours_mb_per_s']:>10.2f}")  # fmt: skip
    print(f"\n{'vocab report pass':20} {'MB':>6} {'seconds':>8} {'MB/s':>6}")
    for r in report:
        print(f"{r['tokenizer']:20} {r['mb']:>6.2f} {r['seconds']:>8.2f} {r['mb_per_s']:>6.2f}")
    print(
        json.dumps(
            {"bench": "tokenizer", "repeats": args.repeats, "training": training, "vocab_report": report}
        )
    )


if __name__ == "__main__":
    main()
