"""Evaluation throughput: scored tokens/s of domainlm's causal scorer versus the Hugging Face
perplexity guide's loop, on the same model, text, window and stride, in one run.

    .venv/bin/python benchmarks/bench_eval.py                 # best of 3
    .venv/bin/python benchmarks/bench_eval.py --repeats 1 --max-docs 4

Baseline (https://huggingface.co/docs/transformers/perplexity): per document, windows of
`max_length` advancing by `stride`, batch 1, `model(input_ids, labels=...)` (logits for the whole
window). Ours: the same windows for every document, sorted by length into batches, left-padded,
logits only for the scored tail (`logits_to_keep`), cross-entropy on scored positions only.
The model is a randomly initialised Llama at GPT-2's vocabulary (50,257), so the LM head carries
its realistic share of the cost. Both score the same number of tokens: the guide leaves the first
token of each document unscored, ours scores it after a BOS prefix; tokens/s counts scored tokens.
Prints a table and one final JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM  # noqa: E402

from domainlm.assets import reference_tokenizer  # noqa: E402
from domainlm.eval.data import load_domains  # noqa: E402
from domainlm.eval.perplexity import causal_rows  # noqa: E402
from domainlm.eval.scoring import batch_rows, score_batches  # noqa: E402


def build_model(tokenizer, hidden: int, layers: int, context: int) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 8 // 3, num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64), max_position_embeddings=context,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    return LlamaForCausalLM(config).eval()


def hf_guide(model, tokenizer, texts, max_length: int, stride: int) -> tuple[float, int]:
    """The perplexity guide's loop, per document (summed NLL in nats, scored tokens)."""
    total, count = 0.0, 0
    with torch.inference_mode():
        for text in texts:
            ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
            seq_len, prev_end = ids.size(1), 0
            for begin in range(0, seq_len, stride):
                end = min(begin + max_length, seq_len)
                trg_len = end - prev_end
                input_ids = ids[:, begin:end]
                target = input_ids.clone()
                target[:, :-trg_len] = -100
                loss = model(input_ids=input_ids, labels=target).loss
                scored = (target[:, 1:] != -100).sum().item()
                total += loss.item() * scored
                count += scored
                prev_end = end
                if end == seq_len:
                    break
    return total, count


def ours(model, tokenizer, texts, max_length: int, stride: int, batch_size: int) -> tuple[float, int]:
    plan = causal_rows(tokenizer, texts, max_length, stride)
    nll = score_batches(model, batch_rows(plan.rows, batch_size), tokenizer.eos_token_id, torch.device("cpu"))
    return nll, plan.num_tokens


def best_of(repeats: int, fn) -> tuple[float, float, tuple[float, int]]:
    """(best wall seconds, best CPU seconds, result). CPU time is the steadier number on a shared
    machine: other processes stretch the wall clock but not this process's own compute."""
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-docs", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--stride", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    tokenizer = AutoTokenizer.from_pretrained(reference_tokenizer("gpt2"))
    model = build_model(tokenizer, args.hidden, args.layers, args.max_length)
    texts = load_domains(["finance"], max_docs=args.max_docs)[0].texts
    base_s, base_cpu, (base_nll, base_tokens) = best_of(
        args.repeats, lambda: hf_guide(model, tokenizer, texts, args.max_length, args.stride)
    )
    ours_s, ours_cpu, (our_nll, our_tokens) = best_of(
        args.repeats, lambda: ours(model, tokenizer, texts, args.max_length, args.stride, args.batch_size)
    )
    rows = [
        ("HF perplexity guide (batch 1)", base_s, base_cpu, base_tokens, base_nll / base_tokens),
        (f"domainlm eval (batch {args.batch_size})", ours_s, ours_cpu, our_tokens, our_nll / our_tokens),
    ]
    print(f"finance, {len(texts)} docs, {sum(len(t.encode()) for t in texts):,} bytes; Llama h={args.hidden} "
          f"L={args.layers} vocab {len(tokenizer):,}; window {args.max_length}, stride {args.stride}; "
          f"{args.threads} threads; best of {args.repeats}")  # fmt: skip
    print(
        f"{'scorer':<32} {'wall s':>8} {'CPU s':>8} {'tokens':>8} {'tokens/s':>9} {'tok/CPU-s':>9} {'loss':>8}"
    )
    for name, seconds, cpu, tokens, loss in rows:
        print(f"{name:<32} {seconds:>8.2f} {cpu:>8.2f} {tokens:>8,} {tokens / seconds:>9,.0f} "
              f"{tokens / cpu:>9,.0f} {loss:>8.4f}")  # fmt: skip
    speedup = (our_tokens / ours_s) / (base_tokens / base_s)
    cpu_speedup = (our_tokens / ours_cpu) / (base_tokens / base_cpu)
    print(f"speedup (tokens/s ratio): {speedup:.2f}x wall, {cpu_speedup:.2f}x CPU time")
    print(json.dumps({
        "bench": "eval", "docs": len(texts), "max_length": args.max_length, "stride": args.stride,
        "batch_size": args.batch_size, "threads": args.threads,
        "baseline_tokens_per_s": round(base_tokens / base_s, 1), "ours_tokens_per_s": round(our_tokens / ours_s, 1),
        "speedup": round(speedup, 3), "cpu_speedup": round(cpu_speedup, 3), "baseline_loss": round(base_nll / base_tokens, 5),
        "ours_loss": round(our_nll / our_tokens, 5),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
