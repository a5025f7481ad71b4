"""`--set KEY=VALUE` parsing by field type, and configs to and from JSON dicts."""

from __future__ import annotations

import dataclasses
import json

from keras_wrs.recipes.config.schema import FIELD_TYPES, Config, unknown_name

__all__ = ["override", "apply_settings", "assigned_fields", "parse_value", "to_dict", "from_dict"]

_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def _field_error(name, text, expected, example):
    return ValueError(
        f"`{name}` must be {expected} (e.g. --set {name}={example}). Received: {name}={text}"
    )


def _parse_bool(name, text):
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise _field_error(name, text, "true or false", "true")


def _parse_number(name, text, kind):
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    expected = "an integer" if kind == "int" else "a number"
    raise _field_error(name, text, expected, "3" if kind == "int" else "0.1")


def _parse_tuple(name, text):
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text.split(",") if text else []
    if not isinstance(value, list):
        raise _field_error(name, text, "a list", "[60,120]" if name == "step_epochs" else "[a,b]")
    return tuple(value)


def _parse_any(text):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_value(name, text):
    """Parse the command-line text of field `name` by the field's type.

    Strings are taken as written (`augment=none` is the name "none"); only a
    field that may be None (`lr`, `data_dir`, ...) reads `none`/`null` as None.

    Args:
        name: a `Config` field.
        text: the text after `=`.

    Returns:
        The value, of the field's type.

    Raises:
        ValueError: text that is not of the field's type.
    """
    kind = FIELD_TYPES[name]
    optional = kind.endswith("|None")
    if optional and text.lower() in ("none", "null"):
        return None
    base = kind.removesuffix("|None")
    if base == "bool":
        return _parse_bool(name, text)
    if base in ("int", "float"):
        return _parse_number(name, text, base)
    if base == "tuple":
        return _parse_tuple(name, text)
    if base == "dict":
        value = _parse_any(text)
        if not isinstance(value, dict):
            raise _field_error(name, text, "a JSON object", '{"width":8}')
        return value
    if base == "str":
        return text
    return _parse_any(text)


def override(config, assignments):
    """Return `config` with `key=value` assignments applied.

    Each value is parsed by its field's type: integers (`epochs=3`; `3.0` is
    an error), numbers (`lr=0.1`), booleans (`plots=false`, also `no`, `0`),
    lists as JSON (`step_epochs=[60,120]`), strings as written
    (`augment=none`), and `none` for None in the fields that allow it.
    `model_kwargs.width=8` sets one entry of a dict field (the value read as
    JSON, else as a string). A `model=...` that changes the model starts
    from empty `model_kwargs` (the recipe's are arguments of its own model)
    unless `model_kwargs` is assigned too.

    Args:
        config: a `Config`.
        assignments: strings `"key=value"`.

    Returns:
        A new `Config` (check it with `validate`).

    Raises:
        ValueError: a malformed assignment, an unknown field (listing the
            valid fields) or a value of the wrong type.
    """
    fields = {f.name for f in dataclasses.fields(Config)}
    changes = {}
    for item in assignments:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        field, dot, sub = key.partition(".")
        if not sep or not key:
            raise ValueError(f"Overrides are KEY=VALUE. Received: {item!r}")
        if field not in fields:
            raise ValueError(unknown_name("config field", field, fields))
        current = changes.get(field, getattr(config, field))
        if dot:
            if not isinstance(current, dict) or not sub:
                raise ValueError(f"{field!r} is not a dict; cannot set {key!r}")
            changes[field] = {**current, sub: _parse_any(text)}
        else:
            changes[field] = parse_value(field, text.strip())
    if changes.get("model", config.model) != config.model and "model_kwargs" not in changes:
        changes["model_kwargs"] = {}  # the recipe's are arguments of its own model
    return dataclasses.replace(config, **changes)


def assigned_fields(assignments):
    """The config fields that `key=value` assignments name (`a.b=1` names `a`)."""
    return {
        item.partition("=")[0].strip().replace("-", "_").partition(".")[0] for item in assignments
    }


def apply_settings(config, flags, assignments, axes=None):
    """`config` with command-line flags and `--set` assignments, each field set once.

    The rule for a field named twice: a flag and a `--set` that give the same
    field different values are refused, and so is a `--set` of a field that a
    grid axis varies; the message names both. The same value given twice is
    not a conflict.

    Args:
        config: a `Config`.
        flags: `{field: (flag, value)}` of the flags given (e.g.
            `{"jit_compile": ("--xla", True)}`).
        assignments: `--set` strings `"key=value"`.
        axes: `{field: flag}` of the fields a grid varies (`--optimizers`,
            `--grid`, ...).

    Returns:
        A new `Config` (check it with `validate`).

    Raises:
        ValueError: a conflict, or an assignment `override` refuses.
    """
    assigned = override(config, assignments)
    for field in sorted(assigned_fields(assignments)):
        value = getattr(assigned, field)
        if field in (axes or {}):
            raise ValueError(
                f"--set {field}=... conflicts with {axes[field]}, which gives the values of "
                f"`{field}` for the grid: name `{field}` in one place only."
            )
        if field in flags and flags[field][1] != value:
            flag, given = flags[field]
            raise ValueError(
                f"{flag} sets {field}={given!r} but --set gives {field}={value!r}: a "
                f"field is set once; drop one of them."
            )
    return dataclasses.replace(assigned, **{f: v for f, (_, v) in flags.items()})


def to_dict(config):
    """A JSON-ready dict of every field."""
    return {
        k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()
    }


def from_dict(values):
    """The inverse of `to_dict`; unknown keys raise a ValueError."""
    fields = {f.name: f for f in dataclasses.fields(Config)}
    unknown = set(values) - set(fields)
    if unknown:
        raise ValueError(f"Unknown config fields: {', '.join(sorted(unknown))}")
    values = {
        k: tuple(v) if FIELD_TYPES[k] == "tuple" and isinstance(v, list) else v
        for k, v in values.items()
    }
    return Config(**values)
