"""`domainlm mix` cold (empty token cache) and warm (re-mix at a new ratio) against the Hugging Face path.

On the same corpus, the four shipped samples as two sources (domain = finance + legal + medical,
general), and for two tokenizers (the shipped GPT-2, and a 16K domain BPE that `domainlm tokenizer
train` builds here from the samples), measures in one run:
  reference  `datasets.load_dataset("json")` + `.map(tokenize)` + `.map(group_texts)`, as in
             transformers' examples/pytorch/language-modeling/run_clm.py (block_size = seq_len);
  raw        `tokenizers` `encode_batch` over the documents already in memory (no reading/writing,
             tokenizer loaded before the clock starts);
  cold       `domainlm mix` end to end with an empty token cache (read, tokenize, write the cache
             entries, held-out split, shuffle, write shards + manifest), sources at 50/50;
  warm       `domainlm mix` again at 60/40 with the cache the cold run filled;
and cold and warm again on the corpus repeated 10x, to show that peak memory does not grow with
the corpus and what a re-mix costs at scale.

    .venv/bin/python benchmarks/bench_mix.py               # best of 2, plus the 10x cases
    .venv/bin/python benchmarks/bench_mix.py --repeats 1 --scale 0   # quicker, no 10x cases

Each case runs in a fresh child process, the cases in turn for each repeat (a busy shared machine
slows them alike); per case the fastest run's seconds and MB/s, the least CPU seconds of any run
and the largest peak RSS are reported. Seconds and CPU seconds (all threads, from getrusage) cover
the measured call only, not the interpreter start or the imports; loading the tokenizer is inside
it for every case but raw. Peak RSS is the whole child's (wait4). MB counts UTF-8 bytes of document text; tokens are the corpus's tokens. CPU-hours
per TB use the marginal CPU-s/MB between the 1x and 10x runs (fixed costs such as loading the
tokenizer drop out). Prints a table and one final JSON line.
"""

from __future__ import annotations

import argparse
import gzip
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

SEQ_LEN = 1024
RAW_BATCH_DOCS = 1000  # datasets.map's default batch size, used for the raw encode_batch too
DOMAIN_VOCAB = 16000
GENERAL = "general"
COLD_RATIO, WARM_RATIO = 0.5, 0.6  # the domain source's share; general takes the rest
SECONDS_PER_TB_PER_S_PER_MB = 1e6 / 3600  # CPU-s/MB -> CPU-hours per TB


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
    return usage.ru_utime + usage.ru_stime


def _texts(paths: list[str]) -> list[str]:
    from domainlm.corpus import CorpusReader

    return [doc.text for doc in CorpusReader(paths)]


def _reference(spec: dict) -> dict:
    """run_clm.py's data path: load_dataset('json') -> map(tokenize) -> map(group_texts), with a
    fresh datasets cache (a reused one would replay the map from disk)."""
    from itertools import chain

    from datasets import load_dataset
    from transformers import AutoTokenizer

    paths = [p for group in spec["sources"].values() for p in group]
    tokenizer = AutoTokenizer.from_pretrained(spec["tokenizer"])
    cache_dir = tempfile.mkdtemp(prefix="hf-", dir=spec["tmp"])
    raw = load_dataset("json", data_files=paths, split="train", cache_dir=cache_dir)
    tokenized = raw.map(lambda ex: tokenizer(ex["text"]), batched=True, remove_columns=raw.column_names)

    def group_texts(examples: dict) -> dict:
        concatenated = {k: list(chain(*examples[k])) for k in examples}
        total = len(concatenated["input_ids"]) // SEQ_LEN * SEQ_LEN
        result = {k: [t[i : i + SEQ_LEN] for i in range(0, total, SEQ_LEN)] for k, t in concatenated.items()}
        result["labels"] = result["input_ids"].copy()
        return result

    grouped = tokenized.map(group_texts, batched=True)
    return {"tokens": len(grouped) * SEQ_LEN, "bytes": sum(len(t.encode("utf-8")) for t in raw["text"])}


def _raw(spec: dict) -> dict:
    """encode_batch over documents already in memory, batches of 1000 documents (load not timed)."""
    tokenizer, texts = spec["loaded"]
    tokens = 0
    for start in range(0, len(texts), RAW_BATCH_DOCS):
        encodings = tokenizer.encode_batch(texts[start : start + RAW_BATCH_DOCS], add_special_tokens=False)
        tokens += sum(len(e.ids) for e in encodings)
    return {"tokens": tokens, "bytes": sum(len(t.encode("utf-8")) for t in texts)}


def _raw_setup(spec: dict) -> None:
    from tokenizers import Tokenizer

    paths = [p for group in spec["sources"].values() for p in group]
    spec["loaded"] = (Tokenizer.from_file(str(Path(spec["tokenizer"]) / "tokenizer.json")), _texts(paths))


def _mix(spec: dict) -> dict:
    from domainlm.mix.build import build_mix
    from domainlm.mix.config import MixConfig

    ratio = spec["ratio"]
    config = MixConfig.model_validate(
        {
            "sources": {
                "domain": {"paths": spec["sources"]["domain"], "ratio": ratio},
                GENERAL: {"paths": spec["sources"][GENERAL], "ratio": round(1 - ratio, 6)},
            },
            "seq_len": SEQ_LEN,
            "val_fraction": 0.01,
            "tokenizer": spec["tokenizer"],
            "out": spec["out"],
        }
    )
    result = build_mix(config, quiet=True, overwrite=True, cache=spec["cache"])
    return {"bytes": result.text_bytes, "tokens": sum(s.tokens + s.val_tokens for s in result.sources)}


def _setup(spec: dict) -> dict:
    """What every mix pays before reading any corpus, cold or warm: load the tokenizer (its identity
    keys the cache). Probing the sources' first documents and building (proving) the encoder is
    paid only by a run with a cache miss (mix.build.LazyEncoder); the rest of a warm run is the cache's."""
    from domainlm.mix import build
    from domainlm.mix.config import MixConfig

    sources = {name: {"paths": paths, "ratio": 0.5} for name, paths in spec["sources"].items()}
    config = MixConfig.model_validate({"sources": sources, "tokenizer": spec["tokenizer"]})
    build.load_mix_tokenizer(config.tokenizer, config.eos_token)
    return {"bytes": 0, "tokens": 0}


CASES = {"reference": _reference, "raw": _raw, "cold": _mix, "warm": _mix, "setup": _setup}


def _import_setup(spec: dict) -> None:
    """Imports happen before the clock starts, for every case alike."""
    if spec["case"] == "reference":
        import datasets  # noqa: F401
        import transformers  # noqa: F401
    elif spec["case"] == "raw":
        _raw_setup(spec)
    else:
        import domainlm.mix.build  # noqa: F401
        import domainlm.mix.config  # noqa: F401


def _child(spec: dict) -> None:
    _import_setup(spec)
    cpu, started = _cpu(), time.perf_counter()
    result = CASES[spec["case"]](spec)
    result.update(seconds=time.perf_counter() - started, cpu_seconds=_cpu() - cpu)
    print(json.dumps(result))


def _run_case(spec: dict) -> dict:
    """One case in a fresh process: its numbers plus its peak RSS (MiB, from wait4)."""
    cmd = [sys.executable, __file__, "--child", json.dumps(spec)]
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        if status != 0:
            err.seek(0)
            raise SystemExit(f"case {spec['case']} failed with status {status}: {err.read()[-2000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_mib"] = usage.ru_maxrss / 1024
    mb = result["bytes"] / 1e6  # 0 for the setup case, which reads no corpus
    result["cpu_s_per_mb"] = result["cpu_seconds"] / mb if mb else 0.0
    result["mb_per_s"] = mb / result["seconds"] if mb else 0.0
    return result


def _train_domain_bpe(folder: Path) -> str:
    from domainlm.tokenizer.config import TrainConfig
    from domainlm.tokenizer.train import train_tokenizer

    corpora = [{"name": d, "paths": [str(sample_corpus(d))]} for d in SAMPLE_DOMAINS]
    config = TrainConfig.model_validate(
        {"vocab_size": DOMAIN_VOCAB, "split_digits": True, "corpora": corpora}
    )
    train_tokenizer(config, folder / "domain_bpe")
    return str(folder / "domain_bpe")


def _corpus(folder: Path, scale: int) -> dict[str, list[str]]:
    """domain = the finance, legal and medical samples; general = the general sample. At scale 1 the
    shipped files; else one plain JSON Lines file per source holding them `scale` times (streamed)."""
    groups = {"domain": [d for d in SAMPLE_DOMAINS if d != GENERAL], GENERAL: [GENERAL]}
    if scale == 1:
        return {name: [str(sample_corpus(d)) for d in domains] for name, domains in groups.items()}
    sources = {}
    for name, domains in groups.items():
        path = folder / f"{name}_x{scale}.jsonl"
        with open(path, "wb") as out:
            for _ in range(scale):
                for domain in domains:
                    with gzip.open(sample_corpus(domain), "rb") as handle:
                        out.writelines(handle)
        sources[name] = [str(path)]
    return sources


def _round(
    runs: dict, tmp: Path, tokenizers: dict, corpora: dict, scale: int, cases: list[str], rep: int
) -> None:
    for tok_name, tok_path in tokenizers.items():
        cache = tmp / f"cache-{tok_name}-x{scale}-{rep}"  # empty for the cold run, filled for the warm
        for case in cases:
            spec = {
                "case": case, "tokenizer": tok_path, "sources": corpora[scale], "tmp": str(tmp),
                "cache": str(cache), "out": str(tmp / "mix"), "ratio": WARM_RATIO if case == "warm" else COLD_RATIO,
            }  # fmt: skip
            runs.setdefault((tok_name, case, scale), []).append(_run_case(spec))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="runs per case; the fastest is reported")
    parser.add_argument(
        "--scale", type=int, default=10, help="corpus multiple for the scale cases (0 = skip)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(json.loads(args.child))
        return
    runs: dict[tuple, list[dict]] = {}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        tokenizers = {"gpt2": str(reference_tokenizer("gpt2")), "domain-bpe-16k": _train_domain_bpe(tmp)}
        corpora = {1: _corpus(tmp, 1)}
        for rep in range(args.repeats):
            _round(runs, tmp, tokenizers, corpora, 1, ["reference", "raw", "cold", "warm", "setup"], rep)
        if args.scale > 1:
            corpora[args.scale] = _corpus(tmp, args.scale)
            # the baselines too, so the ratios are also read where a run's fixed costs (tokenizer
            # load, the fast encoder's proof: ~1.5 CPU-s for GPT-2) no longer weigh on 16 MB
            _round(runs, tmp, tokenizers, corpora, args.scale, ["reference", "raw", "cold", "warm"], 0)
    rows = {}
    for key, results in runs.items():
        rows[key] = dict(min(results, key=lambda r: r["seconds"]))
        rows[key]["peak_rss_mib"] = max(r["peak_rss_mib"] for r in results)
        least = min(results, key=lambda r: r["cpu_seconds"])  # CPU columns: the least CPU any run took
        rows[key].update(cpu_seconds=least["cpu_seconds"], cpu_s_per_mb=least["cpu_s_per_mb"])
    _report(rows, args)


def _per_tb(rows: dict, tok: str, case: str, scale: int) -> float:
    """CPU-hours per TB from the marginal CPU-s/MB between the 1x and the scaled run."""
    small, large = rows[(tok, case, 1)], rows.get((tok, case, scale))
    if large is None:
        return small["cpu_s_per_mb"] * SECONDS_PER_TB_PER_S_PER_MB
    marginal = (large["cpu_seconds"] - small["cpu_seconds"]) / ((large["bytes"] - small["bytes"]) / 1e6)
    return marginal * SECONDS_PER_TB_PER_S_PER_MB


def _entry(rows: dict, tok: str, scale: int) -> dict:
    """One tokenizer's summary: speeds, the warm run's share of the cold run's CPU, memory, CPU-h/TB."""
    mine = {(case, s): r for (t, case, s), r in rows.items() if t == tok}
    cold, warm = mine[("cold", 1)], mine[("warm", 1)]
    entry = {
        "mb_per_s": {f"{c}_x{s}": round(r["mb_per_s"], 3) for (c, s), r in mine.items()},
        "cpu_s_per_mb": {f"{c}_x{s}": round(r["cpu_s_per_mb"], 4) for (c, s), r in mine.items()},
        "peak_rss_mib": {f"{c}_x{s}": round(r["peak_rss_mib"], 1) for (c, s), r in mine.items()},
        "cold_vs_reference": round(cold["mb_per_s"] / mine[("reference", 1)]["mb_per_s"], 2),
        "cold_vs_raw_encode_batch": round(cold["mb_per_s"] / mine[("raw", 1)]["mb_per_s"], 2),
        "cold_vs_reference_cpu": round(mine[("reference", 1)]["cpu_s_per_mb"] / cold["cpu_s_per_mb"], 2),
        "cold_vs_raw_encode_batch_cpu": round(mine[("raw", 1)]["cpu_s_per_mb"] / cold["cpu_s_per_mb"], 2),
        "warm_cpu_fraction": round(warm["cpu_seconds"] / cold["cpu_seconds"], 4),
        "setup_cpu_seconds": round(mine[("setup", 1)]["cpu_seconds"], 3),
        "warm_cpu_fraction_without_setup": round(
            (warm["cpu_seconds"] - mine[("setup", 1)]["cpu_seconds"]) / cold["cpu_seconds"], 4
        ),
        "cpu_hours_per_tb": {c: round(_per_tb(rows, tok, c, scale), 1) for c in ("cold", "warm")},
    }
    if ("cold", scale) in mine:
        big_cold, big_warm = mine[("cold", scale)], mine[("warm", scale)]
        entry["warm_cpu_fraction_at_scale"] = round(big_warm["cpu_seconds"] / big_cold["cpu_seconds"], 4)
        entry["warm_cpu_fraction_at_scale_without_setup"] = round(
            (big_warm["cpu_seconds"] - entry["setup_cpu_seconds"]) / big_cold["cpu_seconds"], 4
        )
        entry["rss_growth_at_scale"] = round(big_cold["peak_rss_mib"] / cold["peak_rss_mib"], 2)
        for base, name in (("reference", "reference"), ("raw", "raw_encode_batch")):
            if (base, scale) in mine:
                ref = mine[(base, scale)]
                entry[f"cold_vs_{name}_at_scale"] = round(big_cold["mb_per_s"] / ref["mb_per_s"], 2)
                entry[f"cold_vs_{name}_cpu_at_scale"] = round(
                    ref["cpu_s_per_mb"] / big_cold["cpu_s_per_mb"], 2
                )
    return entry


def _summary_line(tok: str, entry: dict, scale: int) -> str:
    line = (
        f"{tok}: cold / reference {entry['cold_vs_reference']:.2f}x wall, {entry['cold_vs_reference_cpu']:.2f}x "
        f"CPU; cold / raw encode_batch {entry['cold_vs_raw_encode_batch']:.2f}x wall, "
        f"{entry['cold_vs_raw_encode_batch_cpu']:.2f}x CPU; warm CPU = {entry['warm_cpu_fraction']:.1%} of cold"
    )
    if "warm_cpu_fraction_at_scale" in entry:
        line += f" ({entry['warm_cpu_fraction_at_scale']:.1%} at x{scale})"
    line += (
        f"; without the {entry['setup_cpu_seconds']:.2f} CPU-s setup every run pays (loading the "
        f"tokenizer): {entry['warm_cpu_fraction_without_setup']:.1%}"
    )
    if "warm_cpu_fraction_at_scale" in entry:
        line += (
            f" ({entry['warm_cpu_fraction_at_scale_without_setup']:.1%} at x{scale}); peak RSS x{scale} / x1 "
            f"{entry['rss_growth_at_scale']:.2f}"
        )
    if "cold_vs_reference_at_scale" in entry:
        line += (
            f"; at x{scale}: cold / reference {entry['cold_vs_reference_at_scale']:.2f}x wall, "
            f"{entry['cold_vs_reference_cpu_at_scale']:.2f}x CPU, cold / raw encode_batch "
            f"{entry['cold_vs_raw_encode_batch_at_scale']:.2f}x wall, {entry['cold_vs_raw_encode_batch_cpu_at_scale']:.2f}x CPU"
        )
    per_tb = entry["cpu_hours_per_tb"]
    return line + f"; CPU-hours per TB: cold {per_tb['cold']:,.1f}, warm {per_tb['warm']:,.1f}"


def _report(rows: dict, args: argparse.Namespace) -> None:
    mb = rows[next(iter(rows))]["bytes"] / 1e6
    domains = ", ".join(d for d in SAMPLE_DOMAINS if d != GENERAL)
    print(
        f"corpus: shipped samples as domain ({domains}) + general, {mb:.1f} MB; seq_len {SEQ_LEN}; "
        f"cold {COLD_RATIO:g}/{1 - COLD_RATIO:g}, warm {WARM_RATIO:g}/{1 - WARM_RATIO:g}; "
        f"{os.cpu_count()} cores, best of {args.repeats}; load average at the end {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'tokenizer':<15} {'case':<10} {'MB text':>8} {'tokens':>12} {'seconds':>8} {'MB/s':>7} "
        f"{'CPU s':>7} {'CPU s/MB':>9} {'peak RSS MiB':>13}"
    )
    for (tok, case, scale), r in rows.items():
        label = case if scale == 1 else f"{case} x{scale}"
        print(
            f"{tok:<15} {label:<10} {r['bytes'] / 1e6:>8.1f} {r['tokens']:>12,} {r['seconds']:>8.2f} "
            f"{r['mb_per_s']:>7.2f} {r['cpu_seconds']:>7.2f} {r['cpu_s_per_mb']:>9.4f} {r['peak_rss_mib']:>13.0f}"
        )
    summary: dict = {"bench": "mix", "cores": os.cpu_count(), "repeats": args.repeats}
    summary["load_avg_1m"] = round(os.getloadavg()[0], 2)
    for tok in dict.fromkeys(key[0] for key in rows):
        summary[tok] = _entry(rows, tok, args.scale)
        print(_summary_line(tok, summary[tok], args.scale))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
