"""Encoding throughput: `tokenizers` encode_batch_fast against the exact tiktoken encoder (fast_bpe.py).

On the four shipped samples (documents already in memory, batches of 1000 documents, no special
tokens added) for two tokenizers: the shipped GPT-2 and a domain BPE that `domainlm tokenizer train`
builds here from the same samples (vocab 16000, split digits). Each encoder runs in a fresh child
process, in turn for each repeat (a busy shared machine slows them alike); the fastest run is
reported. Columns: ids/s and MB/s (UTF-8 bytes of text) over wall time, CPU seconds of all threads
per MB (load-independent where wall time is not), the one-off seconds to build and prove the
encoder, and whether both encoders gave the same ids (sha256 of every id).

    .venv/bin/python benchmarks/bench_encode.py              # best of 3
    .venv/bin/python benchmarks/bench_encode.py --repeats 1  # quicker

Prints a table and one final JSON line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from domainlm.assets import SAMPLE_DOMAINS, reference_tokenizer, sample_corpus  # noqa: E402

BATCH_DOCS = 1000
DOMAIN_VOCAB = 16000
ENCODERS = ("tokenizers", "tiktoken")


def _texts() -> list[str]:
    from domainlm.corpus import CorpusReader

    return [doc.text for doc in CorpusReader([str(sample_corpus(d)) for d in SAMPLE_DOMAINS])]


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # all threads of this process
    return usage.ru_utime + usage.ru_stime


def _encode(tokenizer_json: str, encoder_name: str) -> dict:
    """One encoder over the whole corpus; the build (and proof) is timed apart from the encoding."""
    from tokenizers import Tokenizer

    from domainlm.tokenizer.fast_bpe import TokenizersEncoder, build_fast_encoder

    texts = _texts()
    tokenizer = Tokenizer.from_file(tokenizer_json)
    started = time.perf_counter()
    encoder = TokenizersEncoder(tokenizer) if encoder_name == "tokenizers" else build_fast_encoder(tokenizer)
    if encoder is None:
        raise SystemExit(f"{tokenizer_json}: no tiktoken conversion")
    setup = time.perf_counter() - started
    digest, tokens = hashlib.sha256(), 0
    cpu, started = _cpu_seconds(), time.perf_counter()
    for start in range(0, len(texts), BATCH_DOCS):
        for ids in encoder.encode_batch(texts[start : start + BATCH_DOCS]):
            digest.update(ids.astype("<u4").tobytes())
            tokens += len(ids)
    seconds, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
    num_bytes = sum(len(t.encode("utf-8")) for t in texts)
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "setup_seconds": setup,
        "tokens": tokens,
        "bytes": num_bytes,
        "ids_sha256": digest.hexdigest(),
    }


def _train_domain_bpe(folder: Path) -> str:
    from domainlm.tokenizer.config import TrainConfig
    from domainlm.tokenizer.train import train_tokenizer

    corpora = [{"name": d, "paths": [str(sample_corpus(d))]} for d in SAMPLE_DOMAINS]
    config = TrainConfig.model_validate(
        {"vocab_size": DOMAIN_VOCAB, "split_digits": True, "corpora": corpora}
    )
    train_tokenizer(config, folder / "domain_bpe")
    return str(folder / "domain_bpe" / "tokenizer.json")


def _run_case(tokenizer_json: str, encoder_name: str) -> dict:
    cmd = [sys.executable, __file__, "--child", encoder_name, "--tokenizer", tokenizer_json]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["ids_per_s"] = result["tokens"] / result["seconds"]
    result["mb_per_s"] = result["bytes"] / 1e6 / result["seconds"]
    result["cpu_s_per_mb"] = result["cpu_seconds"] / (result["bytes"] / 1e6)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per case; the fastest is reported")
    parser.add_argument("--child", choices=ENCODERS, help=argparse.SUPPRESS)
    parser.add_argument("--tokenizer", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_encode(args.tokenizer, args.child)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        tokenizers = {
            "gpt2": str(reference_tokenizer("gpt2") / "tokenizer.json"),
            f"domain-bpe-{DOMAIN_VOCAB // 1000}k": _train_domain_bpe(Path(tmp)),
        }
        runs: dict[tuple[str, str], list[dict]] = {}
        for _ in range(args.repeats):
            for name, path in tokenizers.items():
                for encoder in ENCODERS:
                    runs.setdefault((name, encoder), []).append(_run_case(path, encoder))
    rows = {key: min(results, key=lambda r: r["seconds"]) for key, results in runs.items()}
    _report(rows, args)


def _report(rows: dict, args: argparse.Namespace) -> None:
    first = next(iter(rows.values()))
    print(
        f"corpus: shipped samples ({', '.join(SAMPLE_DOMAINS)}), {first['bytes'] / 1e6:.1f} MB, "
        f"batches of {BATCH_DOCS} documents, {os.cpu_count()} cores, best of {args.repeats}"
    )
    print(
        f"{'tokenizer':<15} {'encoder':<11} {'tokens':>11} {'ids/s':>11} {'MB/s':>7} {'CPU s/MB':>9} "
        f"{'CPU/wall':>9} {'setup s':>8} {'same ids':>9}"
    )
    summary: dict = {"bench": "encode", "cores": os.cpu_count(), "repeats": args.repeats, "tokenizers": {}}
    for (name, encoder), r in rows.items():
        same = r["ids_sha256"] == rows[(name, "tokenizers")]["ids_sha256"]
        print(
            f"{name:<15} {encoder:<11} {r['tokens']:>11,} {r['ids_per_s']:>11,.0f} {r['mb_per_s']:>7.2f} "
            f"{r['cpu_s_per_mb']:>9.3f} {r['cpu_seconds'] / r['seconds']:>9.2f} {r['setup_seconds']:>8.2f} "
            f"{'yes' if same else 'NO':>9}"
        )
        entry = summary["tokenizers"].setdefault(name, {})
        entry[encoder] = {
            "ids_per_s": round(r["ids_per_s"]),
            "mb_per_s": round(r["mb_per_s"], 3),
            "cpu_s_per_mb": round(r["cpu_s_per_mb"], 4),
            "setup_seconds": round(r["setup_seconds"], 2),
            "same_ids": same,
        }
    for name, entry in summary["tokenizers"].items():
        entry["speedup_wall"] = round(entry["tiktoken"]["mb_per_s"] / entry["tokenizers"]["mb_per_s"], 2)
        entry["speedup_cpu"] = round(
            entry["tokenizers"]["cpu_s_per_mb"] / entry["tiktoken"]["cpu_s_per_mb"], 2
        )
        print(
            f"{name}: tiktoken / tokenizers {entry['speedup_wall']:.2f}x wall, {entry['speedup_cpu']:.2f}x CPU"
        )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
