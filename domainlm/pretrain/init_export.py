"""Recipe -> the run's exact initialization as an HF model dir: `domainlm pretrain --export-init DIR`.

Every rank builds the model on the CPU from the recipe's seed (domainlm.pretrain.loop.prepare_model:
built or loaded from model.init_from, added token rows initialized by vocab_init.prepare_vocabulary) before
DeepSpeed touches it. Building it here the same way, from the same resolved inputs `domainlm pretrain`
validates, gives the very weights step 0 starts from without starting any rank: the "untrained"
baseline an evaluation compares the trained export against, so it measures what training added.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Any

from domainlm.errors import ConfigError
from domainlm.outputs import atomic_output_dir, check_output_dir
from domainlm.pretrain.config import Recipe
from domainlm.pretrain.inputs import RunInputs, load_run
from domainlm.pretrain.speed import trimmed_for_export

log = logging.getLogger(__name__)

COMMAND = "pretrain --export-init"  # the output marker's command
FLAG = "--export-init"


def export_init(
    recipe_name: str | Path,
    overrides: list[str] | None,
    out: Path,
    *,
    run_dir: Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the initialization of the run `recipe_name` + `overrides` would start (at `run_dir`) to `out`.

    Validates like `domainlm pretrain` (recipe, seq_len, tokenizer against the mix, --out) before
    building anything; `run_dir` only locates a mix YAML's build dir (default runs/<recipe name>).
    """
    overrides = list(overrides or [])
    recipe, run_dir, inputs = load_run(recipe_name, overrides, run_dir)
    read = inputs.read_paths(recipe)
    out = check_output_dir(out, overwrite=overwrite, inputs=read, flag=FLAG)
    eos_token_id = _eos_token_id(inputs)
    # Building and saving import DeepSpeed, whose logger writes to stdout: keep --json output clean.
    with contextlib.redirect_stdout(sys.stderr):
        model, tokenizer = build_initial_model(recipe, inputs, eos_token_id)
        with atomic_output_dir(out, overwrite=overwrite, command=COMMAND, inputs=read) as tmp:
            # Without the vocabulary's padding rows, as the trained export (speed.trimmed_for_export).
            with trimmed_for_export(model, model.state_dict(), len(tokenizer)) as state_dict:
                model.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
    log.debug("wrote the initialization of %s (seed %d) to %s", recipe.name, recipe.train.seed, out)
    return out


def _eos_token_id(inputs: RunInputs) -> int:
    """The run spec's EOS: the built mix's separator, else the one the mix YAML will use (its tokenizer's)."""
    if inputs.manifest is not None:
        return inputs.manifest.eos_token_id
    eos = inputs.tokenizer.eos_token_id
    if eos is None:
        raise ConfigError(
            f"{FLAG}: the tokenizer {inputs.tokenizer.path} ({inputs.tokenizer_source}) names no EOS token; "
            "set eos_token in the mix YAML, or build the mix first with `domainlm mix`"
        )
    return eos


def build_initial_model(recipe: Recipe, inputs: RunInputs, eos_token_id: int) -> tuple[Any, Any]:
    """(model, HF tokenizer) exactly as a rank builds them before step 0; use_cache on, as the export has it."""
    from transformers import AutoTokenizer

    from domainlm.mix.dataset import train_dataset
    from domainlm.pretrain.loop import prepare_model, token_ids

    tokenizer = AutoTokenizer.from_pretrained(Path(inputs.tokenizer.path).resolve())
    ids = token_ids(inputs.tokenizer.vocab_size, eos_token_id, tokenizer)
    # New token rows are fitted on the mix's training sequences, as on a rank (on the CPU here).
    sequences = train_dataset(inputs.manifest) if inputs.manifest is not None else None
    model = prepare_model(recipe, ids, inputs.seq_len.value, sequences)
    model.config.use_cache = True  # generation wants the KV cache; the trained export turns it on too
    return model, tokenizer
