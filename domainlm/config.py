"""Shared config machinery: YAML file + `--set a.b=value` overrides -> a validated pydantic model.

Every stage declares its config as pydantic models deriving from `StrictModel` (unknown keys are
errors) and loads it through `load_config`, so a typo such as `train.lrr` fails with its dotted
path before any work starts. Precedence: model defaults < YAML < --set overrides < explicit flags
(the caller applies flags last). Errors read `file: dotted.key: message`.

Paths follow one rule, owned here: a path written in a YAML file is relative to that file's folder;
a path the user types (a flag or a `--set`) is relative to the current directory. Config models mark
their path fields with `ConfigPath` / `ConfigPathList` (or a `PathField` that also knows shipped
names, such as the tokenizer `gpt2`), and `load_config` makes every marked value absolute. A list of
overrides for another config (`OverridesFor`, e.g. a recipe's data.mix_overrides) is resolved where
it is written too: its path values are made absolute against the recipe's folder, or the cwd in a --set.
"""

from __future__ import annotations

import copy
import json
import os
import re
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo

from domainlm.assets import shipped_corpus, shipped_mix, shipped_tokenizer
from domainlm.errors import ConfigError
from domainlm.storage import is_url

ModelT = TypeVar("ModelT", bound=BaseModel)

# Suffixes accepted for counts such as `total_tokens: 50M`: decimal, as token budgets are quoted.
_COUNT_SUFFIXES = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "G": 10**9, "T": 10**12}
_COUNT_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([KMBGT]?)\s*$", re.IGNORECASE)


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are errors, assignments are re-validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


@dataclass(frozen=True)
class PathField:
    """Marks a str (or list of str) config field as a filesystem path, resolved by `load_config`.

    `shipped` maps a bare name to a shipped asset (e.g. 'gpt2' -> the packaged tokenizer) or None;
    a value that names a shipped asset and is not an existing path stands for that asset.
    """

    shipped: Callable[[str], Path | None] | None = None


@dataclass(frozen=True)
class OverridesFor:
    """Marks a list[str] field of `key=value` overrides meant for another config (e.g. a recipe's
    data.mix_overrides, applied to the mix YAML): the paths they set follow the rule of the file
    (or --set) the overrides are written in, not of the config they are later applied to.

    `model` returns the target config model (a callable, so a low-level config need not import it).
    """

    model: Callable[[], type[BaseModel]]


PATH_FIELD = PathField()
ConfigPath = Annotated[str, PATH_FIELD]  # a path: relative to the YAML file, or to the cwd in a --set
ConfigPathList = Annotated[list[str], PATH_FIELD]
TokenizerPath = Annotated[str, PathField(shipped=shipped_tokenizer)]  # a path, or gpt2 / bert-base-uncased
CorpusPathList = Annotated[
    list[str], PathField(shipped=shipped_corpus)
]  # paths/globs, or finance, legal, ...
MixPath = Annotated[str, PathField(shipped=shipped_mix)]  # a mix dir or YAML, or a shipped mix name


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


def validated_count(value: Any, field: str, also: str = "") -> int:
    """parse_count inside a pydantic validator: a ValueError, so the loader's one-line error names the
    file and the dotted key (`recipe.yaml: train.total_tokens: ...`) rather than the bare field."""
    try:
        return parse_count(value, field)
    except ConfigError as exc:
        raise ValueError(f"{exc}{also}") from None


# ---- paths -------------------------------------------------------------------------------------


def resolve_cli_path(value: str | Path) -> Path | str:
    """A path the user typed (a flag or a --set value): relative to the current directory. A URL
    (s3://bucket/key, see domainlm.storage) is returned as the same string: it is no local path."""
    if is_url(value):
        return value  # a str: Path() would fold `s3://` into `s3:/`
    return Path(os.path.abspath(Path(value).expanduser()))


def resolve_yaml_path(value: str | Path, yaml_file: str | Path) -> Path:
    """A path written inside `yaml_file`: relative to that file's folder, wherever the command runs."""
    path = Path(value).expanduser()
    if path.is_absolute():
        return Path(os.path.normpath(path))
    return Path(os.path.normpath(Path(yaml_file).resolve().parent / path))


def _resolve_one(value: Any, yaml_file: Path | None, marker: PathField) -> Any:
    """One value of a path field -> an absolute path string (no yaml_file: typed by the user)."""
    if not isinstance(value, str) or not value:
        return value  # not a path (e.g. a number in a --set): validation reports it
    if is_url(value):
        return value  # s3://bucket/key: not relative to the YAML's folder nor the cwd
    path = resolve_cli_path(value) if yaml_file is None else resolve_yaml_path(value, yaml_file)
    if marker.shipped is not None and not path.exists() and (shipped := marker.shipped(value)) is not None:
        return str(shipped)
    return str(path)


def _marker_in(annotation: Any) -> PathField | None:
    origin = get_origin(annotation)
    if origin is Annotated:
        args = get_args(annotation)
        found = next((m for m in args[1:] if isinstance(m, PathField)), None)
        return found or _marker_in(args[0])
    if origin in (Union, types.UnionType):
        return next((m for m in map(_marker_in, get_args(annotation)) if m is not None), None)
    return None


def _overrides_marker(info: FieldInfo) -> OverridesFor | None:
    found = next((m for m in info.metadata if isinstance(m, OverridesFor)), None)
    if found is None and get_origin(info.annotation) is Annotated:
        found = next((m for m in get_args(info.annotation)[1:] if isinstance(m, OverridesFor)), None)
    return found


def _resolve_override(model: type[BaseModel], text: str, yaml_file: Path | None) -> str:
    """One `key=value` override for `model`, its path values made absolute (the rest kept as written)."""
    if not isinstance(text, str) or "=" not in text:
        return text  # not an override: applying it reports the problem
    path, value = parse_override(text)
    resolved = _resolved_value(model, path, value, text, yaml_file)
    if resolved == value:
        return text
    # JSON is YAML flow syntax: parse_override reads the value back unchanged.
    return f"{'.'.join(path)}={json.dumps(resolved, ensure_ascii=False, default=str)}"


def _path_marker(info: FieldInfo) -> PathField | None:
    """The PathField of a model field: in pydantic's metadata (Annotated at the top) or in a union."""
    found = next((m for m in info.metadata if isinstance(m, PathField)), None)
    return found or _marker_in(info.annotation)


def _section(annotation: Any) -> tuple[str, type[BaseModel]] | None:
    """('one' | 'list' | 'dict', Model) for a nested section, a list of sections or a name -> section map."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated or origin in (Union, types.UnionType):
        inner = args[:1] if origin is Annotated else args
        return next((s for s in map(_section, inner) if s is not None), None)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "one", annotation
    if origin in (list, tuple, Sequence) and args and isinstance(args[0], type):
        return ("list", args[0]) if issubclass(args[0], BaseModel) else None
    if origin is dict and len(args) == 2 and isinstance(args[1], type):
        return ("dict", args[1]) if issubclass(args[1], BaseModel) else None
    return None


def resolve_paths(model: type[BaseModel], data: Any, yaml_file: Path | None) -> Any:
    """Make every marked path field in `data` (a raw dict for `model`) absolute, in place.

    yaml_file: the file `data` was read from, or None for values the user typed (relative to the
    cwd). Walks nested sections, lists of sections and name -> section maps; absent keys stay absent.
    """
    if not isinstance(data, dict):
        return data  # validation reports the wrong type
    for name, info in model.model_fields.items():
        if name not in data:
            continue
        value, marker = data[name], _path_marker(info)
        overrides = _overrides_marker(info)
        if overrides is not None and isinstance(value, list):
            data[name] = [_resolve_override(overrides.model(), v, yaml_file) for v in value]
            continue
        if marker is not None:
            if isinstance(value, list):
                data[name] = [_resolve_one(v, yaml_file, marker) for v in value]
            else:
                data[name] = _resolve_one(value, yaml_file, marker)
            continue
        section = _section(info.annotation)
        if section is None:
            continue
        kind, sub = section
        if kind == "one":
            children = [value]
        elif kind == "list":
            children = value if isinstance(value, list) else []
        else:
            children = list(value.values()) if isinstance(value, dict) else []
        for child in children:
            resolve_paths(sub, child, yaml_file)
    return data


# ---- YAML --------------------------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML silently keeps the last)."""

    def construct_document(self, node: yaml.Node) -> Any:
        self._dotted: dict[int, str] = {}  # id(mapping node) -> its dotted key, for error messages
        self._name_mappings(node, "")
        return super().construct_document(node)

    def _name_mappings(self, node: yaml.Node, dotted: str) -> None:
        if id(node) in self._dotted:  # an anchor used again (or a recursive alias): named once
            return
        if isinstance(node, yaml.MappingNode):
            self._dotted[id(node)] = dotted
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    self._name_mappings(value, f"{dotted}.{key.value}" if dotted else key.value)
        elif isinstance(node, yaml.SequenceNode):
            for index, value in enumerate(node.value):
                self._name_mappings(value, f"{dotted}.{index}" if dotted else str(index))

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` may be overridden key by key
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            line = key_node.start_mark.line + 1
            if key in seen:
                parent = self._dotted.get(id(node), "")
                raise ConfigError(
                    f"{parent + '.' if parent else ''}{key}: duplicate key at lines {seen[key]} and {line}; "
                    "a mapping holds each key once: merge the two entries or rename one"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing, unreadable, non-UTF-8 or invalid file is a one-line ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: file not found; check the path")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
            "save the file as UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror}); check its permissions") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
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


def _assign(data: dict[str, Any], path: list[str], value: Any, text: str) -> None:
    node = data
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(
                f"--set {text!r}: '{part}' is a value or a list, not a section; set the whole value"
            )
        node = child
    node[path[-1]] = value


def apply_overrides(
    data: dict[str, Any], overrides: list[str], model: type[BaseModel] | None = None
) -> dict[str, Any]:
    """Apply `a.b=value` strings to a nested dict (in place) and return it.

    With `model`, path fields that an override sets are made absolute against the current directory
    (the user typed them), whatever file the rest of `data` came from.
    """
    for text in overrides:
        path, value = parse_override(text)
        if model is not None:
            value = _resolved_value(model, path, value, text, None)
        _assign(data, path, value, text)
    return data


def _resolved_value(
    model: type[BaseModel], path: list[str], value: Any, text: str, yaml_file: Path | None
) -> Any:
    """`value` set at dotted `path` of `model`, with the path fields in it resolved (a copy)."""
    single: dict[str, Any] = {}
    _assign(single, path, copy.deepcopy(value), text)
    resolve_paths(model, single, yaml_file)
    for part in path:
        single = single[part]
    return single


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


def load_config_data(
    model: type[BaseModel], path: str | Path | None, overrides: list[str] | None = None
) -> dict[str, Any]:
    """YAML at `path` (optional) with its path fields resolved against its folder, then `--set`
    overrides with theirs resolved against the cwd: the raw dict, for callers that add flags."""
    if path is None:
        data: dict[str, Any] = {}
    else:
        data = resolve_paths(model, read_yaml(path), Path(path))
    return apply_overrides(data, overrides or [], model)


def load_config(model: type[ModelT], path: str | Path | None, overrides: list[str] | None = None) -> ModelT:
    """Defaults < YAML at `path` (optional) < `--set` overrides, paths resolved, validated against `model`."""
    data = load_config_data(model, path, overrides)
    return validate_config(model, data, str(path) if path is not None else "--set")


def dump_yaml(data: dict[str, Any]) -> str:
    """YAML text with keys in declaration order (for resolved configs saved beside outputs)."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
