"""Mix held-out sets + the engine -> loss, perplexity and bits per byte per source, during training.

Causal models score the held-out *text* the way `domainlm eval` does (domainlm.losses: the BOS/EOS
prefix, windows of seq_len tokens with stride seq_len // 2, every text token once) over the exact
UTF-8 bytes of the documents scored, so the in-training bits per byte and `domainlm eval`'s agree.
Masked and span-corruption models score the packed held-out sequences (no per-byte figure). Every
row is scored whatever the world size: ranks with fewer rows run padding batches that score nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from domainlm.losses import IGNORE_INDEX, summarize_loss
from domainlm.mix.manifest import MixManifest
from domainlm.pretrain.data import (
    ValSet,
    causal_batch,
    causal_val_sets,
    packed_batch,
    packed_val_sets,
    rank_batches,
)
from domainlm.pretrain.objectives import Objective, token_losses


def open_val_sets(
    manifest: MixManifest, tokenizer_dir: Path, objective: Objective, max_sequences: int | None
) -> list[ValSet]:
    """Each source's held-out rows for this objective (every rank builds the same list)."""
    if objective.model_family == "causal":
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)  # as `domainlm eval` loads it
        return causal_val_sets(manifest, tokenizer, objective.seq_len, max_sequences)
    return packed_val_sets(manifest, max_sequences)


def _batch_nll(
    engine: Any, objective: Objective, rows: list, scored: bool, index: int, rank: int, pad: int
) -> torch.Tensor:
    """[summed nats, scored tokens] of one micro-batch, float64 on the engine's device."""
    device = torch.device(engine.device)
    if objective.model_family == "causal":
        inputs, labels = causal_batch(rows, pad, scored)
        inputs = {key: value.to(device) for key, value in inputs.items()}
    else:
        # Fixed (index, rank) streams: the same masks at every eval, so evals compare across steps.
        inputs = objective(packed_batch(rows).to(device), index, rank)
        labels = inputs.pop("labels")
        if not scored:
            labels = torch.full_like(labels, IGNORE_INDEX)
    nll, mask = token_losses(engine(**inputs).logits, labels.to(device), causal=False)
    return torch.stack([nll.double().sum(), mask.sum().double()])


@torch.no_grad()
def evaluate_sets(
    engine: Any,
    objective: Objective,
    val_sets: list[ValSet],
    rank: int,
    world_size: int,
    micro_batch_size: int,
    pad: int,
) -> list[dict[str, Any]]:
    """One summary per set (loss, perplexity, bits_per_byte, counts), summed over ranks. Collective."""
    summaries = []
    for val in val_sets:
        sums = torch.zeros(2, dtype=torch.float64, device=torch.device(engine.device))
        for index, (rows, scored) in enumerate(rank_batches(val, rank, world_size, micro_batch_size)):
            sums += _batch_nll(engine, objective, rows, scored, index, rank, pad)
        torch.distributed.all_reduce(sums)
        nats, count = sums.tolist()
        summary = summarize_loss(nats, int(count), val.num_bytes or 1).as_dict()
        if val.num_bytes is None:
            summary["bits_per_byte"] = None  # only some tokens are predicted: not a per-byte code length
            summary["num_bytes"] = None
        summaries.append(
            {"domain": val.name, **summary, "num_rows": len(val.rows), "num_documents": val.num_documents}
        )
    return summaries
