"""A pretraining run dir -> its exact initialization as an HF model dir (the demo's untrained baseline).

The run's model is built from a seed (identical on every rank), so rebuilding it from the saved recipe
gives the very weights training started from: the evaluation then measures what training added.
"""

from __future__ import annotations

from pathlib import Path

from domainlm.outputs import atomic_output_dir


def export_initialization(run_dir: Path, out: Path) -> Path:
    """Write the run's step-0 model (safetensors, config, tokenizer) to `out`."""
    from transformers import AutoTokenizer

    from domainlm.pretrain.loop import prepare_model, spec_token_ids
    from domainlm.pretrain.spec import read_run_spec

    spec = read_run_spec(run_dir)
    tokenizer = AutoTokenizer.from_pretrained(spec.tokenizer_dir)
    model = prepare_model(spec.recipe, spec_token_ids(spec, tokenizer), spec.seq_len)
    with atomic_output_dir(out, overwrite=True, command="demo", inputs=[run_dir]) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return out
