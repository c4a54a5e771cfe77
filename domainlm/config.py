"""Shared config machinery: YAML file + `--set a.b=value` overrides -> a validated pydantic model.

Every stage declares its config as pydantic models deriving from `StrictModel` (unknown keys are
errors), and loads it through `load_config`, so a typo such as `train.lrr` fails with its dotted
path before any work starts. Precedence: model defaults < YAML < --set overrides < explicit flags
(the caller applies flags last, with `apply_overrides`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from domainlm.errors import ConfigError

ModelT = TypeVar("ModelT", bound=BaseModel)

# Suffixes accepted for counts such as `total_tokens: 50M`: decimal, as token budgets are quoted.
_COUNT_SUFFIXES = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "G": 10**9, "T": 10**12}
_COUNT_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([KMBGT]?)\s*$", re.IGNORECASE)


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are errors, assignments are re-validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def parse_count(value: int | float | str, field: str = "value") -> int:
    """'50M' -> 50_000_000, '1.5B' -> 1_500_000_000, 4e6 -> 4_000_000 (decimal suffixes)."""
    if isinstance(value, bool):
        raise ConfigError(f"{field}: expected a count such as 50M, got {value!r}")
    if isinstance(value, int | float):
        number, scale = float(value), 1
    else:
        match = _COUNT_RE.match(str(value))
        if not match:
            raise ConfigError(f"{field}: expected a count such as 50M, 1.5B or 2000000, got {value!r}")
        number, scale = float(match.group(1)), _COUNT_SUFFIXES[match.group(2).upper()]
    count = number * scale
    if count < 0 or count != int(count):
        raise ConfigError(f"{field}: expected a whole non-negative count, got {value!r}")
    return int(count)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing file or a YAML syntax error is a one-line ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: file not found; check the path")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values at the top level")
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """'train.lr=3e-4' -> (['train', 'lr'], 3e-4). The value is parsed as YAML (numbers, lists, null)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. --set train.lr=3e-4")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b=value` strings to a nested dict (in place) and return it."""
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(
                    f"--set {text!r}: '{part}' is a value or a list, not a section; set the whole value"
                )
            node = child
        node[path[-1]] = value
    return data


def format_validation_error(exc: ValidationError, source: str) -> str:
    """All problems of a pydantic error as one line: `source: a.b: message; c: message`."""
    problems = []
    for err in exc.errors():
        dotted = ".".join(str(p) for p in err["loc"]) or "(top level)"
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown key; check the spelling against the documented fields"
        elif err["type"] == "missing":
            message = "required field is missing"
        problems.append(f"{dotted}: {message}")
    return f"{source}: " + "; ".join(problems)


def validate_config(model: type[ModelT], data: dict[str, Any], source: str) -> ModelT:
    """Validate a dict against `model`, turning pydantic errors into one ConfigError line."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def load_config(model: type[ModelT], path: str | Path | None, overrides: list[str] | None = None) -> ModelT:
    """Defaults < YAML at `path` (optional) < `--set` overrides, validated against `model`."""
    data = read_yaml(path) if path is not None else {}
    apply_overrides(data, overrides or [])
    return validate_config(model, data, str(path) if path is not None else "config")


def resolve_path(value: str | Path, base_dir: Path) -> Path:
    """Relative paths in a YAML file are relative to the file's own directory, not the cwd."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base_dir / path)


def dump_yaml(data: dict[str, Any]) -> str:
    """YAML text with keys in declaration order (for resolved configs saved beside outputs)."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
