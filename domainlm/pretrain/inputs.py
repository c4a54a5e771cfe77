"""Recipe data + model sections -> the run's inputs, resolved once: the mix (built, or a YAML to build),
seq_len and where it came from, the tokenizer checked against the mix, the model's context checked
against seq_len.

Pure: it reads the recipe's files and writes nothing, so `--dry-run` and a real launch see the same
values and every disagreement is found before any corpus is tokenized or any rank starts.
The recipe's `data.seq_len` owns the run's sequence length; the mix follows it (a YAML is built with
it) or must already have it (a built mix); `None` takes the mix's.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from domainlm.errors import ConfigError, DataError
from domainlm.mix.manifest import MixManifest, is_mix_dir, open_mix
from domainlm.pretrain.config import Recipe, find_recipe, load_recipe
from domainlm.storage import is_url


@dataclass(frozen=True)
class Sourced:
    """A resolved value and where it came from, as the one-line errors and --dry-run name it."""

    value: int
    source: str

    def __str__(self) -> str:
        return f"{self.value} ({self.source})"


@dataclass
class RunInputs:
    """What the run reads. `manifest` is None until a mix YAML is built (then `mix_config` is set)."""

    mix_dir: Path
    mix_yaml: Path | None  # the mix YAML to build into mix_dir; None when data.mix is a directory
    mix_config: Any  # domainlm.mix.config.MixConfig with data.seq_len / data.tokenizer applied, or None
    manifest: MixManifest | None
    seq_len: Sourced
    tokenizer: Any  # domainlm.tokenizer.load.LoadedTokenizer
    tokenizer_source: str

    @property
    def needs_build(self) -> bool:
        return self.manifest is None

    def read_paths(self, recipe: Recipe) -> list[Path]:
        """Every path the run reads from (mix, tokenizer, init_from, added tokens map): an --overwrite
        of an output dir must never delete one of them."""
        paths = [Path(recipe.data.mix), Path(self.tokenizer.path)]
        return paths + [Path(p) for p in (recipe.model.init_from, recipe.model.added_tokens_map) if p]


def display(path: str | Path) -> str:
    """A path as a user reads it in a message: relative to the current directory when under it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def recipe_seq_len(recipe: Recipe, recipe_path: Path, overrides: list[str]) -> Sourced | None:
    """data.seq_len with its origin: the recipe file, or the `--set` that changed it."""
    if recipe.data.seq_len is None:
        return None
    by_flag = any(o.partition("=")[0].strip() == "data.seq_len" for o in overrides)
    origin = "--set data.seq_len" if by_flag else display(recipe_path)
    return Sourced(recipe.data.seq_len, origin if by_flag else f"data.seq_len in {origin}")


def load_run(
    recipe_name: str | Path, overrides: list[str], run_dir: Path | None, *, fresh: bool = False
) -> tuple[Recipe, Path, RunInputs]:
    """The recipe with `overrides`, its run dir (default runs/<recipe name>, absolute) and its resolved
    inputs: what `domainlm pretrain` and `--export-init` both start from."""
    recipe = load_recipe(recipe_name, overrides)
    run_dir = Path(run_dir or Path("runs") / recipe.name).resolve()
    wanted = recipe_seq_len(recipe, find_recipe(str(recipe_name)), overrides)
    return recipe, run_dir, resolve_inputs(recipe, wanted, run_dir, fresh=fresh)


def resolve_inputs(
    recipe: Recipe, wanted: Sourced | None, run_dir: Path, *, fresh: bool = False
) -> RunInputs:
    """The mix, seq_len and tokenizer of `recipe`; `fresh` (--overwrite) ignores a mix built in the run dir."""
    source = Path(recipe.data.mix)
    if is_url(recipe.data.mix):  # s3://bucket/mix: training memmaps a checked local copy
        from domainlm.mix.stage import stage_mix

        source = stage_mix(recipe.data.mix)
    if source.is_dir():
        inputs = _from_mix_dir(recipe, source, wanted)
    elif source.suffix in (".yaml", ".yml") and source.is_file():
        inputs = _from_mix_yaml(recipe, source, wanted, run_dir, fresh)
    else:
        what = "no such file or directory" if not source.exists() else "not a mix directory or a mix YAML"
        raise ConfigError(f"data.mix {source}: {what}; give a `domainlm mix` output dir or a mix YAML")
    check_model_context(recipe, inputs.seq_len, inputs.tokenizer.vocab_size)
    return inputs


def _from_mix_dir(recipe: Recipe, mix_dir: Path, wanted: Sourced | None) -> RunInputs:
    if recipe.data.mix_overrides:
        raise ConfigError(
            f"data.mix_overrides {recipe.data.mix_overrides} change a mix YAML before it is built, but data.mix "
            f"{mix_dir} is an already built mix; drop data.mix_overrides, or point data.mix at the mix YAML"
        )
    manifest = open_mix(mix_dir)
    fix = (
        f"set data.seq_len: {manifest.seq_len} (or null: the mix's), or build a mix with "
        f"`domainlm mix --seq-len {wanted.value if wanted else manifest.seq_len}` and point data.mix at it"
    )
    seq_len = _agree(wanted, manifest, fix)
    where, tokenizer_dir = _tokenizer_choice(recipe, manifest)
    tokenizer = load_checked_tokenizer(tokenizer_dir, where, manifest)
    return RunInputs(mix_dir, None, None, manifest, seq_len, tokenizer, where)


def _from_mix_yaml(
    recipe: Recipe, yaml_path: Path, wanted: Sourced | None, run_dir: Path, fresh: bool
) -> RunInputs:
    config = mix_config(recipe, yaml_path)
    mix_dir = Path(recipe.data.build_dir) if recipe.data.build_dir else run_dir / "mix"
    seq_len = wanted or Sourced(config.seq_len, f"the mix YAML {display(yaml_path)}")
    if config.tokenizer is None:
        raise ConfigError(
            f"data.mix {yaml_path}: names no tokenizer; set data.tokenizer (or `tokenizer:` there)"
        )
    where = "data.tokenizer" if recipe.data.tokenizer else "the mix YAML's tokenizer"
    in_run_dir = relpath_inside(mix_dir, run_dir)
    built = is_mix_dir(mix_dir) and not (fresh and in_run_dir)
    manifest = None
    if built:  # reused, never silently: it must be what this recipe would build
        manifest = open_mix(mix_dir)
        fix = "start over with --overwrite, " if in_run_dir else ""
        fix += f"set data.build_dir to a new folder, or set data.seq_len: {manifest.seq_len}"
        _agree(seq_len, manifest, fix)
    tokenizer = load_checked_tokenizer(Path(config.tokenizer), where, manifest, eos_token=config.eos_token)
    return RunInputs(mix_dir, yaml_path, config, manifest, seq_len, tokenizer, where)


def mix_config(recipe: Recipe, yaml_path: Path) -> Any:
    """The recipe's mix YAML with data.mix_overrides, data.seq_len and data.tokenizer applied, validated."""
    from domainlm.mix.config import apply_flags, load_mix_config

    for override in recipe.data.mix_overrides:
        if override.partition("=")[0].strip() == "seq_len":
            raise ConfigError(
                f"data.mix_overrides sets {override!r}, but data.seq_len owns the run's sequence length; "
                f"remove it from data.mix_overrides and set data.seq_len: {override.partition('=')[2].strip()}"
            )
    config = load_mix_config(yaml_path, recipe.data.mix_overrides)
    return apply_flags(config, str(yaml_path), tokenizer=recipe.data.tokenizer, seq_len=recipe.data.seq_len)


def _agree(wanted: Sourced | None, manifest: MixManifest, fix: str) -> Sourced:
    """The run's seq_len: the wanted one if the mix has it, the mix's if none is wanted; else one line."""
    found = Sourced(manifest.seq_len, f"the mix {display(manifest.path)}")
    if wanted is None:
        return found
    if wanted.value != found.value:
        raise ConfigError(f"seq_len {wanted} != seq_len {found}; {fix}")
    return wanted


def _tokenizer_choice(recipe: Recipe, manifest: MixManifest) -> tuple[str, Path]:
    """The recipe's tokenizer, else the one the mix was tokenized with (relative to the mix dir)."""
    if recipe.data.tokenizer:
        return "data.tokenizer", Path(recipe.data.tokenizer)
    path = Path(manifest.tokenizer.path)
    if not path.is_absolute() and manifest.root is not None and not path.exists():
        path = (Path(manifest.root) / path).resolve()
    if not path.exists():
        raise DataError(
            f"the mix's tokenizer {path} (tokenizer.path of {display(manifest.path)}): not found; "
            "set data.tokenizer to the tokenizer directory the mix was built with"
        )
    return "the mix's tokenizer", path


def load_checked_tokenizer(
    path: Path, where: str, manifest: MixManifest | None, eos_token: str | None = None
) -> Any:
    """The one loader with the tokenizer's own EOS (or `eos_token`, as the mix YAML sets it); against a
    built mix: same vocabulary, EOS id and fingerprint, else one line naming both (DataError)."""
    from domainlm.tokenizer.load import check_matches_mix, load_tokenizer

    loaded = load_tokenizer(path, eos_token=eos_token)
    if manifest is not None and loaded.eos_token is None and manifest.eos_token:
        # It names no EOS, so the mix chose its separator (mix YAML `eos_token`): load it the same way.
        loaded = load_tokenizer(path, eos_token=manifest.eos_token)
    if manifest is not None:
        check_matches_mix(loaded, manifest, where)
    return loaded


def check_model_context(recipe: Recipe, seq_len: Sourced, vocab_size: int) -> None:
    """The model must attend over seq_len positions and have a row for every token id."""
    model = recipe.model
    if model.added_tokens_map is not None:  # a bad map or a padding conflict fails here, not on every rank
        from domainlm.pretrain.vocab_init import load_added_tokens_map, rows_multiple

        rows_multiple(model, load_added_tokens_map(model.added_tokens_map))
    if model.init_from is None:
        if model.max_position_embeddings is not None and model.max_position_embeddings < seq_len.value:
            raise ConfigError(
                f"model.max_position_embeddings {model.max_position_embeddings} < seq_len {seq_len}; raise "
                f"model.max_position_embeddings to >= {seq_len.value} or leave it null (= seq_len)"
            )
        return
    config_path = Path(model.init_from) / "config.json"
    if not config_path.is_file():
        raise ConfigError(f"model.init_from {model.init_from}: no config.json; give a local HF model dir")
    config = _read_model_config(config_path)
    context = init_from_context(config)
    if context is not None and context < seq_len.value:
        raise ConfigError(
            f"model.init_from {display(model.init_from)}: context {context} ({context_key(config)} of "
            f"{display(config_path)}) < seq_len {seq_len}; lower data.seq_len to <= {context}, or continue "
            "from a model with a longer context"
        )
    rows = config.get("vocab_size")
    if model.added_tokens_map is None and isinstance(rows, int) and rows < vocab_size:
        raise ConfigError(
            f"model.init_from {display(model.init_from)}: vocab_size {rows} ({display(config_path)}) < the "
            f"tokenizer's {vocab_size} tokens; set model.added_tokens_map (from `domainlm tokenizer extend`)"
        )


def _read_model_config(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"model.init_from: {path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"model.init_from: {path} is not a JSON object; give an HF config.json")
    return data


# Where HF configs keep the number of positions a model attends over (T5's relative positions: none).
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length")
# RoBERTa-style models number positions from pad_token_id + 1: that many rows are never a position.
_OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert")


def context_key(config: dict[str, Any]) -> str | None:
    return next((key for key in _CONTEXT_KEYS if isinstance(config.get(key), int)), None)


def init_from_context(config: dict[str, Any]) -> int | None:
    """Tokens a continued model can take in one sequence; None when its positions are unbounded."""
    key = context_key(config)
    if key is None:
        return None
    context = config[key]
    if config.get("model_type") in _OFFSET_POSITIONS:
        context -= int(config.get("pad_token_id") or 0) + 1
    return context


def relpath_inside(path: Path, folder: Path) -> bool:
    """Whether `path` is `folder` or lies under it (both made absolute)."""
    path, folder = Path(os.path.abspath(path)), Path(os.path.abspath(folder))
    return path == folder or folder in path.parents
