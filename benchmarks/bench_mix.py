"""Tokenize-and-pack throughput and memory of `domainlm mix` against the Hugging Face reference path.

On the same corpus (the four shipped samples, one source) and tokenizer (shipped GPT-2), measures:
  (a) reference: `datasets.load_dataset("json")` + `.map(tokenize)` + `.map(group_texts)`, as in
      transformers' examples/pytorch/language-modeling/run_clm.py (block_size = seq_len);
  (b) raw `tokenizers` `encode_batch` over the documents already in memory (no reading, no writing);
  (c) `domainlm mix` end to end (read, tokenize, held-out split, shuffle, write shards + manifest);
and (c) again on the corpus repeated 10x, to show that peak memory does not grow with corpus size.

    .venv/bin/python benchmarks/bench_mix.py                 # best of 3, plus the 10x memory case
    .venv/bin/python benchmarks/bench_mix.py --repeats 1 --scale 0   # quicker, no 10x case

Each case runs in a fresh child process, the three cases in turn for each repeat (so a busy shared
machine slows them alike); its peak RSS comes from wait4, its CPU seconds (all threads) from the same
rusage. MB/s counts UTF-8 bytes of document text. Prints a table and one final JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from domainlm.assets import SAMPLE_DOMAINS, reference_tokenizer, sample_corpus  # noqa: E402

SEQ_LEN = 1024
RAW_BATCH_DOCS = 1000  # datasets.map's default batch size, used for the raw encode_batch too


def _texts(paths: list[str]) -> list[str]:
    from domainlm.corpus import CorpusReader

    return [doc.text for doc in CorpusReader(paths)]


def _reference(paths: list[str], tmp: Path) -> dict:
    """run_clm.py's data path: load_dataset('json') -> map(tokenize) -> map(group_texts)."""
    from itertools import chain

    from datasets import load_dataset
    from transformers import AutoTokenizer

    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(str(reference_tokenizer("gpt2")))
    raw = load_dataset("json", data_files=paths, split="train", cache_dir=str(tmp / "cache"))
    tokenized = raw.map(lambda ex: tokenizer(ex["text"]), batched=True, remove_columns=raw.column_names)

    def group_texts(examples: dict) -> dict:
        concatenated = {k: list(chain(*examples[k])) for k in examples}
        total = len(concatenated["input_ids"]) // SEQ_LEN * SEQ_LEN
        result = {k: [t[i : i + SEQ_LEN] for i in range(0, total, SEQ_LEN)] for k, t in concatenated.items()}
        result["labels"] = result["input_ids"].copy()
        return result

    grouped = tokenized.map(group_texts, batched=True)
    seconds = time.perf_counter() - started
    num_bytes = sum(len(t.encode("utf-8")) for t in raw["text"])
    return {"seconds": seconds, "bytes": num_bytes, "tokens": len(grouped) * SEQ_LEN}


def _raw(paths: list[str], tmp: Path) -> dict:
    """encode_batch over documents already in memory, batches of 1000 documents."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(reference_tokenizer("gpt2") / "tokenizer.json"))
    texts = _texts(paths)
    started = time.perf_counter()
    tokens = 0
    for start in range(0, len(texts), RAW_BATCH_DOCS):
        encodings = tokenizer.encode_batch(texts[start : start + RAW_BATCH_DOCS], add_special_tokens=False)
        tokens += sum(len(e.ids) for e in encodings)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "bytes": sum(len(t.encode("utf-8")) for t in texts), "tokens": tokens}


def _mix(paths: list[str], tmp: Path) -> dict:
    from domainlm.mix.build import build_mix
    from domainlm.mix.config import MixConfig

    config = MixConfig.model_validate(
        {
            "sources": {"corpus": {"paths": paths, "ratio": 1.0}},
            "seq_len": SEQ_LEN,
            "val_fraction": 0.01,
            "tokenizer": str(reference_tokenizer("gpt2")),
            "out": str(tmp / "mix"),
        }
    )
    started = time.perf_counter()
    result = build_mix(config, quiet=True)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "bytes": result.text_bytes, "tokens": result.allocations[0].tokens_taken}


CASES = {"reference": _reference, "raw": _raw, "mix": _mix}


def _child(case: str, paths: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(CASES[case](paths, Path(tmp))))


def _run_case(case: str, paths: list[str]) -> dict:
    """One case in a fresh process: its numbers plus its peak RSS (MiB)."""
    cmd = [sys.executable, __file__, "--child", case, "--paths", *paths]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"case {case} failed with status {status}")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_mib"] = usage.ru_maxrss / 1024
    # CPU seconds of the whole child per MB: all threads, load-independent where wall time is not.
    result["cpu_s_per_mb"] = (usage.ru_utime + usage.ru_stime) / (result["bytes"] / 1e6)
    result["mb_per_s"] = result["bytes"] / 1e6 / result["seconds"]
    return result


def _best_round_robin(cases: list[str], paths: list[str], repeats: int) -> dict[str, dict]:
    """Run the cases in turn, `repeats` rounds, so each sees the same mix of machine load (other
    processes share the cores); report each case's fastest run and its largest peak RSS."""
    runs: dict[str, list[dict]] = {case: [] for case in cases}
    for _ in range(repeats):
        for case in cases:
            runs[case].append(_run_case(case, paths))
    best = {}
    for case, results in runs.items():
        best[case] = min(results, key=lambda r: r["seconds"])
        best[case]["peak_rss_mib"] = max(r["peak_rss_mib"] for r in results)
    return best


def _scaled_corpus(folder: Path, scale: int) -> list[str]:
    """The four samples repeated `scale` times as one plain JSON Lines file (streamed, not held)."""
    import gzip

    path = folder / f"samples_x{scale}.jsonl"
    with open(path, "wb") as out:
        for _ in range(scale):
            for domain in SAMPLE_DOMAINS:
                with gzip.open(sample_corpus(domain), "rb") as handle:
                    for line in handle:
                        out.write(line)
    return [str(path)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per case; the fastest is reported")
    parser.add_argument(
        "--scale", type=int, default=10, help="corpus multiple for the memory case (0 = skip)"
    )
    parser.add_argument("--child", choices=sorted(CASES), help=argparse.SUPPRESS)
    parser.add_argument("--paths", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.paths)
        return
    paths = [str(sample_corpus(d)) for d in SAMPLE_DOMAINS]
    rows = _best_round_robin(["reference", "raw", "mix"], paths, args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        if args.scale > 1:
            rows[f"mix x{args.scale}"] = _run_case("mix", _scaled_corpus(Path(tmp), args.scale))
    _report(rows, args)


def _report(rows: dict, args: argparse.Namespace) -> None:
    print(f"corpus: shipped samples ({', '.join(SAMPLE_DOMAINS)}), GPT-2 tokenizer, seq_len {SEQ_LEN}, "
          f"{os.cpu_count()} cores, best of {args.repeats}")  # fmt: skip
    print(
        f"{'case':<12} {'MB text':>9} {'tokens':>11} {'seconds':>8} {'MB/s':>7} {'CPU s/MB':>9} {'peak RSS MiB':>13}"
    )
    for name, r in rows.items():
        print(
            f"{name:<12} {r['bytes'] / 1e6:>9.1f} {r['tokens']:>11,} {r['seconds']:>8.2f} "
            f"{r['mb_per_s']:>7.2f} {r['cpu_s_per_mb']:>9.2f} {r['peak_rss_mib']:>13.0f}"
        )
    summary = {
        "bench": "mix",
        "cores": os.cpu_count(),
        "mb_per_s": {name: round(r["mb_per_s"], 3) for name, r in rows.items()},
        "cpu_s_per_mb": {name: round(r["cpu_s_per_mb"], 3) for name, r in rows.items()},
        "peak_rss_mib": {name: round(r["peak_rss_mib"], 1) for name, r in rows.items()},
        "mix_vs_reference": round(rows["mix"]["mb_per_s"] / rows["reference"]["mb_per_s"], 2),
        "mix_vs_raw_encode_batch": round(rows["mix"]["mb_per_s"] / rows["raw"]["mb_per_s"], 2),
    }
    scaled = [name for name in rows if name.startswith("mix x")]
    if scaled:
        summary["rss_growth_at_scale"] = round(
            rows[scaled[0]]["peak_rss_mib"] / rows["mix"]["peak_rss_mib"], 2
        )
    print(f"mix / reference: {summary['mix_vs_reference']:.2f}x   mix / raw encode_batch: "
          f"{summary['mix_vs_raw_encode_batch']:.2f}x" + (
              f"   peak RSS at {scaled[0][4:]} corpus: {summary['rss_growth_at_scale']:.2f}x" if scaled else ""))  # fmt: skip
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
