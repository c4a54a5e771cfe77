"""Recipe YAML (+ --set overrides) -> a validated `Recipe`: model, data, objective, optimizer, batch, DeepSpeed.

This is contract D: `domainlm plan --write-recipe` writes YAML this schema loads. Relative paths in a
recipe are relative to the recipe file's folder, in a `--set` to the working directory
(`domainlm.config` owns the rule). Shipped recipes are found by name in `recipes/`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from domainlm.architectures import KIND_OF_ARCH, OBJECTIVE_OF_KIND
from domainlm.assets import shipped_recipes_dir
from domainlm.config import (
    ConfigPath,
    MixPath,
    OverridesFor,
    StrictModel,
    TokenizerPath,
    dump_yaml,
    load_config,
    validate_config,
    validated_count,
)
from domainlm.errors import ConfigError

# The shipped recipes: the top-level recipes/ of a source tree, or domainlm/recipes when installed.
RECIPES_DIR = shipped_recipes_dir()

Arch = Literal["llama", "bert", "roberta", "t5"]
ObjectiveName = Literal["causal", "mlm", "span_corruption"]
# The objective each architecture family trains with (domainlm.architectures); a mismatch is a recipe error.
OBJECTIVE_FOR_ARCH: dict[str, str] = {arch: OBJECTIVE_OF_KIND[kind] for arch, kind in KIND_OF_ARCH.items()}


class ModelConfig(StrictModel):
    """The network: a transformers config built from these fields, or `init_from` a local HF checkpoint."""

    arch: Arch = Field("llama", description="llama (decoder), bert/roberta (encoder), t5 (encoder-decoder)")
    init_from: ConfigPath | None = Field(None, description="local HF model dir for continued pretraining")
    added_tokens_map: ConfigPath | None = Field(
        None, description="added_tokens_map.json from `domainlm tokenizer extend`: new rows = mean of pieces"
    )
    new_token_init: Literal["fit", "mean"] | None = Field(
        None,
        description="rows of the added tokens: mean = the mean of their base pieces' rows; fit = that, then "
        "fitted alone (all base weights frozen) on the run's first training sequences for "
        "new_token_fit_steps steps, which brings held-out bits per byte back to the base model's "
        "(mean alone: +0.08 to +0.3 on tiny models); costs new_token_fit_steps micro-batches of "
        "forward/backward on each rank before step 0 (a run's optimizer step is micro-batches x "
        "accumulation of them); None = fit for llama, mean otherwise",
    )
    new_token_fit_steps: int = Field(
        200, gt=0, description="new_token_init fit: steps, each one micro-batch (train.micro_batch_size)"
    )
    pad_vocab_to_multiple_of: int | None = Field(
        None,
        gt=0,
        description="round the embedding rows (and an untied head) up to a multiple of N for tensor-core "
        "matmul shapes; the extra rows are never produced by the tokenizer (ids stop at its vocab size), "
        "start as the mean of the other rows (init_from) or like any row (from scratch) and are trimmed "
        "from the export; None = the "
        "--pad-to-multiple-of recorded by `tokenizer extend` in added_tokens_map, else 128 for a model "
        "built from scratch (an init_from model keeps its rows); 1 = no padding",
    )
    liger_kernels: bool = Field(
        False,
        description="Liger's Triton RMSNorm, RoPE and SwiGLU kernels (llama, CUDA, the `gpu` extra: "
        "pip install 'domainlm[gpu]'); checked before launch",
    )
    hidden_size: int = Field(2048, gt=0, description="model width H")
    num_layers: int = Field(22, gt=0, description="transformer blocks (encoder and decoder each for t5)")
    num_heads: int = Field(16, gt=0, description="attention heads")
    num_kv_heads: int | None = Field(
        None, gt=0, description="grouped-query KV heads (llama); None = num_heads"
    )
    intermediate_size: int | None = Field(
        None, gt=0, description="MLP width; None = 4H (8/3 H rounded for llama)"
    )
    max_position_embeddings: int | None = Field(
        None, gt=0, description="positions the model can attend over; >= the run's seq_len; None = seq_len"
    )
    rope_theta: float = Field(10000.0, gt=0, description="RoPE base (llama)")
    tie_embeddings: bool = Field(False, description="share input embedding and LM head")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on hidden states and attention (bert/t5)")
    init_std: float = Field(0.02, gt=0, description="std of the normal weight init")
    attention: Literal["sdpa", "flash_attention_2", "eager"] = Field(
        "sdpa", description="sdpa runs flash / memory-efficient kernels through torch"
    )

    @field_validator("init_std", "rope_theta", "dropout", mode="before")
    @classmethod
    def _yaml_float(cls, value: Any) -> Any:
        return _as_float(value)

    @model_validator(mode="after")
    def _heads_divide(self) -> ModelConfig:
        if self.init_from is None and self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        kv = self.num_kv_heads or self.num_heads
        if self.num_heads % kv:
            raise ValueError(f"num_heads {self.num_heads} is not divisible by num_kv_heads {kv}")
        if self.new_token_init == "fit" and self.arch != "llama":
            raise ValueError(
                f"new_token_init: fit scores next-token prediction, which arch {self.arch!r} does not do; "
                "use new_token_init: mean"
            )
        return self


def _mix_config_model() -> type[StrictModel]:
    from domainlm.mix.config import MixConfig

    return MixConfig


class DataConfig(StrictModel):
    """Where the tokens come from: a `domainlm mix` output directory, or a mix YAML that is built first."""

    mix: MixPath = Field(
        description="mix directory (has manifest.json), mix YAML (built into build_dir) or a shipped mix name"
    )
    build_dir: ConfigPath | None = Field(None, description="where a mix YAML is built; None = <run dir>/mix")
    seq_len: int | None = Field(
        None,
        gt=0,
        description="tokens per training sequence, the one owner of the run's seq_len: a mix YAML is "
        "built with it, a built mix must have it; None = the mix's",
    )
    # Paths in them are relative to the recipe file (cwd in a --set), like every path the recipe holds.
    mix_overrides: Annotated[list[str], OverridesFor(_mix_config_model)] = Field(
        default_factory=list,
        description="--set overrides for a mix YAML (not seq_len: use data.seq_len), e.g. [total_tokens=2M]",
    )
    tokenizer: TokenizerPath | None = Field(
        None, description="tokenizer dir (or gpt2); None = the one the mix was built with"
    )
    document_masking: bool = Field(
        False,
        description="causal: positions restart after each EOS and attention stays within the document "
        "(SDPA: block-diagonal mask; flash_attention_2: variable-length kernel); off by default: it costs "
        "throughput on SDPA (README, Pretraining)",
    )


class ObjectiveConfig(StrictModel):
    """Pretraining objective; its model family must match `model.arch`."""

    name: ObjectiveName = "causal"
    mlm_probability: float = Field(0.15, gt=0, lt=1, description="masked LM: fraction of tokens selected")
    noise_density: float = Field(0.15, gt=0, lt=1, description="span corruption: fraction of tokens noised")
    mean_span_length: float = Field(3.0, ge=1, description="span corruption: mean noise span length")


class OptimizerConfig(StrictModel):
    """AdamW with warmup then cosine (or linear / constant) decay, as BloombergGPT and most LLMs."""

    lr: float = Field(3e-4, gt=0, description="peak learning rate")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="final lr as a fraction of the peak")
    warmup_steps: int = Field(2000, ge=0, description="linear warmup steps from lr/warmup_steps to lr")
    decay: Literal["cosine", "linear", "constant"] = "cosine"
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = Field(1e-8, gt=0)
    weight_decay: float = Field(0.1, ge=0)
    grad_clip: float = Field(1.0, ge=0, description="max global grad norm; 0 disables clipping")

    @field_validator("lr", "eps", "weight_decay", "grad_clip", "min_lr_ratio", mode="before")
    @classmethod
    def _yaml_float(cls, value: Any) -> Any:
        return _as_float(value)


class TrainConfig(StrictModel):
    """How long and with what batch. Gradient accumulation is derived, never set by hand."""

    global_batch_sequences: int | None = Field(None, gt=0, description="sequences per optimizer step")
    global_batch_tokens: int | str | None = Field(None, description="or tokens per step, e.g. 1M")
    micro_batch_size: int = Field(1, gt=0, description="sequences per GPU per forward/backward")
    max_steps: int | None = Field(None, description="optimizer steps (>= 1); or give total_tokens")
    total_tokens: int | str | None = Field(None, description="training tokens, e.g. 20B; sets max_steps")
    seed: int = Field(1234, ge=0)
    precision: Literal["bf16", "fp16", "fp32"] = "bf16"
    compile: bool | Literal["per_layer"] = Field(
        False,
        description="torch.compile the model (GPU; slower start, faster steps); per_layer: each decoder "
        "layer alone (one graph reused by every layer: a short start)",
    )
    deterministic: bool = Field(False, description="deterministic kernels (CPU tests: exact resume)")

    @field_validator("global_batch_tokens", "total_tokens")
    @classmethod
    def _count(cls, value: Any, info: Any) -> int | None:
        return None if value is None else validated_count(value, info.field_name)

    @field_validator("max_steps")
    @classmethod
    def _trains(cls, value: int | None) -> int | None:
        # 0 steps is how people ask for the untrained model: point at the command that writes it.
        if value is not None and value < 1:
            raise ValueError(
                f"{value} trains nothing (must be >= 1); for the run's untrained initialization as a model "
                "dir keep max_steps and run `domainlm pretrain --recipe ... --export-init DIR`"
            )
        return value

    @model_validator(mode="after")
    def _one_of_each(self) -> TrainConfig:
        if (self.global_batch_sequences is None) == (self.global_batch_tokens is None):
            raise ValueError("give exactly one of global_batch_sequences and global_batch_tokens")
        if (self.max_steps is None) == (self.total_tokens is None):
            raise ValueError("give exactly one of max_steps and total_tokens")
        return self


class DeepSpeedConfig(StrictModel):
    """ZeRO sharding and memory savers; turned into the DeepSpeed JSON by engine.build_deepspeed_config."""

    zero_stage: int = Field(3, ge=0, le=3, description="0 = DDP, 1 optimizer, 2 + gradients, 3 + parameters")
    offload_optimizer: bool = Field(False, description="optimizer states in CPU RAM (DeepSpeedCPUAdam)")
    offload_params: bool = Field(False, description="ZeRO-3 parameters in CPU RAM")
    activation_checkpointing: bool | Literal["selective"] = Field(
        False,
        description="recompute activations in backward: true = whole layers; selective = keep matmul "
        "and attention outputs, recompute only the cheap ops (norms, SwiGLU, RoPE): less memory saved, "
        "almost no recompute",
    )
    zero_init: bool = Field(
        True,
        description="ZeRO-3: construct the model sharded (deepspeed.zero.Init), each rank holding only its "
        "partitions; false builds it whole on every rank first (domainlm.pretrain.construct)",
    )
    overlap_comm: bool = Field(True, description="overlap gradient reduction with backward (GPU)")
    reduce_bucket_size: int | str = Field(50_000_000, description="elements per reduce bucket, e.g. 50M")
    stage3_prefetch_bucket_size: int | str = Field(
        50_000_000, description="elements prefetched ahead (ZeRO-3)"
    )

    @field_validator("reduce_bucket_size", "stage3_prefetch_bucket_size")
    @classmethod
    def _count(cls, value: Any, info: Any) -> int:
        return validated_count(value, info.field_name)

    @model_validator(mode="after")
    def _offload_needs_stage(self) -> DeepSpeedConfig:
        if self.offload_params and self.zero_stage != 3:
            raise ValueError(f"offload_params needs zero_stage 3, got {self.zero_stage}")
        if self.offload_optimizer and self.zero_stage == 0:
            raise ValueError("offload_optimizer needs zero_stage 1, 2 or 3, got 0")
        return self


class CheckpointConfig(StrictModel):
    every_steps: int = Field(1000, gt=0, description="save a checkpoint every N optimizer steps")
    keep_last: int = Field(3, gt=0, description="checkpoints kept; older ones are deleted")
    export_at_end: bool = Field(True, description="write an HF model dir to <run dir>/export")


class EvalConfig(StrictModel):
    every_steps: int = Field(1000, gt=0, description="evaluate each domain's held-out set every N steps")
    max_sequences: int | None = Field(64, gt=0, description="held-out sequences per domain; None = all")
    micro_batch_size: int | None = Field(None, gt=0, description="None = train.micro_batch_size")


class WandbConfig(StrictModel):
    """Weights & Biases (the wandb package, rank 0 only). Login/API key: wandb's own env and settings."""

    project: str = Field(..., min_length=1, description="W&B project")
    entity: str | None = Field(None, description="team or user; None = wandb's default")
    mode: Literal["online", "offline"] = Field("online", description="offline: sync later with `wandb sync`")


class MlflowConfig(StrictModel):
    """MLflow tracking (the mlflow or mlflow-skinny package, rank 0 only)."""

    tracking_uri: str | None = Field(None, description="e.g. http://mlflow:5000; None = $MLFLOW_TRACKING_URI")
    experiment: str = Field("domainlm", min_length=1, description="created when missing")


class LoggingConfig(StrictModel):
    every_steps: int = Field(10, gt=0, description="one metrics line (and one device sync) per N steps")
    tensorboard: bool = Field(False, description="also write TensorBoard events to <run dir>/tb")
    wandb: WandbConfig | None = Field(None, description="also log to Weights & Biases")
    mlflow: MlflowConfig | None = Field(None, description="also log to MLflow")


class LaunchConfig(StrictModel):
    """Where it runs. Flags --num-gpus/--num-nodes/--hostfile/--launcher override these."""

    device: Literal["auto", "cuda", "cpu"] = Field("auto", description="auto = cuda when available")
    num_gpus: int = Field(1, gt=0, description="processes per node: GPUs, or CPU ranks on device cpu")
    num_nodes: int = Field(1, gt=0)
    hostfile: ConfigPath | None = Field(None, description="DeepSpeed hostfile for multi-node")
    launcher: Literal["deepspeed", "torchrun", "slurm"] = Field(
        "deepspeed", description="torchrun needs no ssh; slurm writes an sbatch script"
    )
    gpu_type: str = Field("h100", description="target GPU for --dry-run estimates (domainlm.plan catalog)")
    master_port: int | None = Field(
        None, gt=0, lt=65536, description="rendezvous port; None = a free one (one node) or 29500 (many)"
    )


class Recipe(StrictModel):
    """A whole pretraining run, readable in a minute."""

    name: str = Field("run", description="run name, used for the default --out runs/<name>")
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    train: TrainConfig
    deepspeed: DeepSpeedConfig = Field(default_factory=DeepSpeedConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    launch: LaunchConfig = Field(default_factory=LaunchConfig)

    @model_validator(mode="after")
    def _objective_fits_model(self) -> Recipe:
        expected = OBJECTIVE_FOR_ARCH[self.model.arch]
        if self.objective.name != expected:
            raise ValueError(
                f"objective.name {self.objective.name!r} does not fit model.arch {self.model.arch!r}; "
                f"use {expected!r}"
            )
        if self.data.document_masking and self.objective.name != "causal":
            raise ValueError(
                f"data.document_masking applies to the causal objective, not {self.objective.name!r}; "
                "set data.document_masking: false"
            )
        return self

    def to_yaml(self) -> str:
        return dump_yaml(self.model_dump(mode="json"))


def _as_float(value: Any) -> Any:
    """PyYAML reads `3e-4` (no dot) as a string; accept it as the float the user meant."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def find_recipe(name_or_path: str) -> Path:
    """'legal' -> recipes/legal.yaml; any existing path is taken as is."""
    path = Path(name_or_path).expanduser()
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"--recipe {name_or_path}: file not found; check the path")
        return path
    shipped = RECIPES_DIR / f"{name_or_path}.yaml"
    if not shipped.is_file():
        names = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))
        raise ConfigError(
            f"--recipe {name_or_path!r}: no such recipe; use a YAML path or one of {', '.join(names)}"
        )
    return shipped


def load_recipe(name_or_path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Shipped name or YAML path, + `--set a.b=v` overrides -> a validated Recipe with absolute paths.

    Paths written in the recipe are relative to its folder; paths in a --set to the working directory.
    """
    path = find_recipe(str(name_or_path))
    return load_config(Recipe, path, overrides)


def recipe_from_dict(data: dict[str, Any], source: str = "recipe") -> Recipe:
    """Validate an already-resolved recipe dict (e.g. the run dir's recipe.yaml)."""
    return validate_config(Recipe, data, source)


def global_batch_sequences(train: TrainConfig, seq_len: int) -> int:
    """Sequences per optimizer step; a token budget is rounded up to whole sequences."""
    if train.global_batch_sequences is not None:
        return train.global_batch_sequences
    return max(1, math.ceil(train.global_batch_tokens / seq_len))


def gradient_accumulation_steps(train: TrainConfig, seq_len: int, world_size: int) -> int:
    """global = micro x accumulation x ranks must hold exactly; otherwise say which numbers to change."""
    per_step = train.micro_batch_size * world_size
    total = global_batch_sequences(train, seq_len)
    if total % per_step:
        raise ConfigError(
            f"train: global batch of {total} sequences is not divisible by micro_batch_size "
            f"{train.micro_batch_size} x {world_size} ranks; set train.global_batch_sequences to a "
            f"multiple of {per_step}"
        )
    return total // per_step


def max_steps(train: TrainConfig, seq_len: int) -> int:
    """Optimizer steps: given, or total_tokens / tokens per step (rounded up)."""
    if train.max_steps is not None:
        return train.max_steps
    tokens_per_step = global_batch_sequences(train, seq_len) * seq_len
    return max(1, math.ceil(train.total_tokens / tokens_per_step))
