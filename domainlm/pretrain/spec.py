"""Parent's resolved run -> RUN/run_spec.json -> every rank: the one typed hand-off between `domainlm pretrain`
and the training processes.

The parent resolves everything once (seq_len and where it came from, the tokenizer checked against
the mix, batch arithmetic, steps, the DeepSpeed JSON); ranks read this file through `read_run_spec`
and never recompute any of it, so the parent's --dry-run and the ranks cannot disagree.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from domainlm.errors import DataError
from domainlm.outputs import write_json
from domainlm.pretrain.config import Recipe

SPEC_FORMAT = "domainlm.run_spec/v1"
SPEC_NAME = "run_spec.json"


class RunSpec(BaseModel):
    """Everything a rank needs besides the data itself, validated when written and when read."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["domainlm.run_spec/v1"] = SPEC_FORMAT
    recipe: Recipe = Field(description="the resolved recipe (absolute paths)")
    run_dir: Path
    mix_dir: Path
    mix_fingerprint: str = Field(description="the mix manifest's fingerprint; checkpoints record it")
    tokenizer_dir: Path
    tokenizer_fingerprint: str = Field(description="domainlm.tokenizer.load's fingerprint, == the mix's")
    vocab_size: int = Field(gt=0, description="the tokenizer loader's vocab_size: embedding rows")
    eos_token_id: int = Field(ge=0, description="the document separator in the mix's shards")
    seq_len: int = Field(gt=0, description="tokens per training sequence (== the mix manifest's)")
    seq_len_source: str = Field(description="where seq_len came from, e.g. data.seq_len of recipes/x.yaml")
    device: Literal["cuda", "cpu", "auto"] = Field(description="auto: each rank resolves it on its own node")
    world_size: int = Field(gt=0, description="ranks over all nodes")
    accumulation: int = Field(gt=0, description="micro-batches per optimizer step on each rank")
    global_batch_sequences: int = Field(gt=0, description="sequences per optimizer step, all ranks")
    tokens_per_step: int = Field(gt=0, description="global_batch_sequences x seq_len")
    max_steps: int = Field(gt=0, description="optimizer steps of the whole run")
    ds_config: dict[str, Any] = Field(
        description="the DeepSpeed JSON, built once by engine.build_deepspeed_config"
    )
    export_only: bool = False
    force_resume: bool = False

    @model_validator(mode="after")
    def _batch_adds_up(self) -> RunSpec:
        micro = self.recipe.train.micro_batch_size
        if self.global_batch_sequences != micro * self.accumulation * self.world_size:
            raise ValueError(
                f"global_batch_sequences {self.global_batch_sequences} != micro_batch_size {micro} x "
                f"accumulation {self.accumulation} x world_size {self.world_size}"
            )
        if self.tokens_per_step != self.global_batch_sequences * self.seq_len:
            raise ValueError(
                f"tokens_per_step {self.tokens_per_step} != global batch x seq_len {self.seq_len}"
            )
        ds = self.ds_config
        expected = {
            "train_batch_size": self.global_batch_sequences,
            "train_micro_batch_size_per_gpu": micro,
            "gradient_accumulation_steps": self.accumulation,
        }
        for key, value in expected.items():
            if ds.get(key) != value:
                raise ValueError(f"ds_config.{key} {ds.get(key)} != {value}")
        if self.eos_token_id >= self.vocab_size:
            raise ValueError(f"eos_token_id {self.eos_token_id} is not below vocab_size {self.vocab_size}")
        return self


def write_run_spec(spec: RunSpec) -> Path:
    """RUN/run_spec.json (atomic: a rank never reads half of it)."""
    path = spec.run_dir / SPEC_NAME
    write_json(path, spec.model_dump(mode="json"))
    return path


def read_run_spec(run_dir: str | Path) -> RunSpec:
    """The one reader of a run dir's spec; DataError (one line) if missing or not valid."""
    path = Path(run_dir) / SPEC_NAME
    if not path.is_file():
        raise DataError(f"{path}: not found; this run dir was not prepared by `domainlm pretrain` (run it)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: unreadable ({exc}); rerun `domainlm pretrain` to rewrite it") from None
    if not isinstance(data, dict) or data.get("format") != SPEC_FORMAT:
        found = data.get("format") if isinstance(data, dict) else None
        raise DataError(f"{path}: format {found!r} is not {SPEC_FORMAT!r}; rerun `domainlm pretrain`")
    try:
        return RunSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise DataError(f"{path}: {where}: {first['msg']}; rerun `domainlm pretrain` to rewrite it") from None
