"""Dotted-name access to a typed (frozen, nested dataclass) configuration.

A configuration is a tree of frozen dataclasses; each leaf has a dotted name such as
`ubm.nr_filters`. This module lists the leaves with their types (`leaf_types`), parses
a command-line string for one of them (`parse_value`), returns a copy with some leaves
replaced (`apply_overrides`, via `dataclasses.replace` along the path), turns a
configuration into JSON and back (`to_json`, `from_json`) and lists the leaves on
which two configurations differ (`differences`). It is what `ml_collections.config_flags`
does for mutable dataclasses, for frozen ones whose annotations are strings
(`from __future__ import annotations`). It reads no flags: `experiments.cli` does.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any

# The command-line spelling of None for a field that may be None.
NONE = "none"


class UnknownFieldError(KeyError):
    """A dotted name that is no field of the configuration."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _optional(kind: Any) -> tuple[Any, bool]:
    """(`kind` without None, whether None is allowed) for `X | None` and `Optional[X]`."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(args) == 1:
            return args[0], len(args) < len(typing.get_args(kind))
    return kind, False


def leaf_types(cls: type, prefix: str = "") -> dict[str, Any]:
    """Every leaf of the dataclass `cls` by dotted name -> its annotated type.

    A field holding a dataclass (or None) is expanded into its fields, e.g.
    `ubm.nr_filters` -> int; a tuple field is one leaf (`faces.methods`).
    """
    leaves: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        kind = _hints(cls)[field.name]
        inner, _ = _optional(kind)
        name = prefix + field.name
        if dataclasses.is_dataclass(inner):
            leaves.update(leaf_types(inner, name + "."))
        else:
            leaves[name] = kind
    return leaves


def type_name(kind: Any) -> str:
    """A short name of a leaf type for messages and help: int, float, tuple[str, ...]."""
    return kind.__name__ if isinstance(kind, type) else str(kind).replace("typing.", "")


def parse_value(name: str, text: str, kind: Any) -> Any:
    """The value of leaf `name` of type `kind` written as `text` on a command line.

    int, float, str, bool (true/false/1/0) and tuples (comma-separated; empty: ());
    `none` gives None where the type allows it.

    Raises:
      ValueError: `text` is not a value of that type (the message names the field).
    """
    inner, nullable = _optional(kind)
    if nullable and text.strip().lower() == NONE:
        return None
    try:
        if inner is bool:
            lowered = text.strip().lower()
            if lowered not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return lowered in ("true", "1")
        if inner in (int, float):
            return inner(text)
        if inner is str:
            return text
        if typing.get_origin(inner) is tuple:
            (item, *_) = typing.get_args(inner)
            return tuple(item(part.strip()) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(
            f"--config.{name}={text!r} is not a {type_name(kind)}"
            + (f" (or {NONE})" if nullable else "")
            + "."
        ) from None
    raise ValueError(f"--config.{name} has a type ({type_name(kind)}) that cannot be overridden.")


def _check_type(name: str, value: Any, kind: Any) -> None:
    """Raises ValueError if `value` (already parsed) does not fit leaf type `kind`."""
    inner, nullable = _optional(kind)
    if value is None and nullable:
        return
    if inner is float and isinstance(value, int) and not isinstance(value, bool):
        return
    origin = typing.get_origin(inner) or inner
    fits = isinstance(value, origin) and not (inner is int and isinstance(value, bool))
    if not fits:
        raise ValueError(f"config.{name} must be a {type_name(kind)}, got {value!r}.")


def apply_overrides(config: Any, overrides: Mapping[str, Any]) -> Any:
    """A copy of the dataclass `config` with each dotted leaf in `overrides` replaced.

    Values are parsed already (see `parse_value`); each is checked against the field's
    type. Raises UnknownFieldError for a name that is no leaf (naming it and its
    nearest section's fields), ValueError for a value of the wrong type or a path
    through a section that is None.
    """
    leaves = leaf_types(type(config))
    for name, value in overrides.items():
        if name not in leaves:
            section = name.rpartition(".")[0]
            near = sorted(n for n in leaves if n.startswith(section + ".")) if section else []
            raise UnknownFieldError(
                f"--config.{name}: the configuration has no field {name!r}"
                + (f"; {section} has {', '.join(near)}" if near else "")
                + "."
            )
        _check_type(name, value, leaves[name])
        config = _replace(config, name.split("."), value, name)
    return config


def _replace(node: Any, path: list[str], value: Any, name: str) -> Any:
    head, *rest = path
    if not rest:
        return dataclasses.replace(node, **{head: value})
    child = getattr(node, head)
    if child is None:
        raise ValueError(
            f"--config.{name}: this configuration has no {head!r} section (it is None)."
        )
    return dataclasses.replace(node, **{head: _replace(child, rest, value, name)})


def to_json(config: Any) -> dict[str, Any]:
    """The configuration as JSON-ready nested dicts (tuples become lists)."""
    return dataclasses.asdict(config)


def from_json(cls: type, data: Mapping[str, Any]) -> Any:
    """The dataclass `cls` rebuilt from `to_json`'s dicts (lists back into tuples).

    Fields missing from `data` keep their defaults. Raises ValueError for a field that
    `cls` does not have.
    """
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{cls.__name__} has no field {', '.join(unknown)}.")
    values = {}
    for key, value in data.items():
        inner, _ = _optional(hints[key])
        if value is not None and dataclasses.is_dataclass(inner):
            value = from_json(inner, value)
        elif isinstance(value, list):
            value = tuple(value)
        values[key] = value
    return cls(**values)


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """Every leaf value of `config` by dotted name (a None section is one leaf)."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            values.update(flatten(value, prefix + field.name + "."))
        else:
            values[prefix + field.name] = value
    return values


def differences(before: Any, after: Any) -> dict[str, tuple[Any, Any]]:
    """The dotted leaves whose values differ: name -> (before, after)."""
    old, new = flatten(before), flatten(after)
    return {
        name: (old.get(name), new.get(name))
        for name in sorted(set(old) | set(new))
        if old.get(name) != new.get(name)
    }
