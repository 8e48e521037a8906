"""The configuration reference, generated from the settings models so it cannot drift.

``python -m mcp_sentinel.config_reference > docs/configuration.md`` writes it; a test fails
when the committed file differs from what this prints. Each section lists every key with its
type, default and description (the field's ``description``, else the model's docstring).
"""

from __future__ import annotations

import inspect
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from mcp_sentinel.config import SentinelSettings

_HEADER = """# Configuration reference

Generated from the settings models by `python -m mcp_sentinel.config_reference`; do not edit
by hand (a test fails when this file is stale). See `config.example.yaml` for a commented
example and the README for `${VAR}` references and `SENTINEL__SECTION__KEY` overrides.
Relative paths are relative to the config file. Secret values are never printed.
"""


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return [annotation]
    for arg in get_args(annotation):
        found.extend(_models_in(arg))
    return found


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if annotation is type(None):
        return "null"
    if annotation is SecretStr:
        return "secret string"
    if origin is Literal:
        return " \\| ".join(json.dumps(arg) for arg in get_args(annotation))
    if origin in (Union, types.UnionType):
        return " \\| ".join(_type_name(arg) for arg in get_args(annotation))
    if origin is typing.Annotated:
        return _type_name(get_args(annotation)[0])
    if origin in (list, tuple, set, frozenset):
        args = [a for a in get_args(annotation) if a is not Ellipsis]
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        key, value = get_args(annotation)
        return f"mapping of {_type_name(key)} to {_type_name(value)}"
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        tag = _tag(annotation)
        return f"section ({tag})" if tag else "section"
    if annotation is Path:
        return "path"
    return getattr(annotation, "__name__", str(annotation))


def _own_doc(model: type[BaseModel]) -> str:
    """The model's own docstring (not one inherited from a base section class)."""
    doc = model.__dict__.get("__doc__") or ""
    return " ".join(inspect.cleandoc(doc).split("\n\n")[0].split()) if doc else ""


def _tag(model: type[BaseModel]) -> str:
    """``type: bearer`` for a variant of a tagged union, else empty."""
    for name in ("type", "transport"):
        field = model.model_fields.get(name)
        if field is not None and get_origin(field.annotation) is Literal:
            return f"{name}: " + "/".join(str(arg) for arg in get_args(field.annotation))
    return ""


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        try:
            value: Any = field.default_factory()  # type: ignore[call-arg]
        except TypeError:
            return "(computed)"
    else:
        value = field.default
    if value is PydanticUndefined:
        return "required"
    if isinstance(value, BaseModel):
        return "(section defaults)"
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, Path):
        return f"`{value}`"
    return f"`{json.dumps(value, default=str)}`"


def _describe(field: FieldInfo) -> str:
    text = field.description or ""
    models = _models_in(field.annotation)
    if not text and len(models) == 1:
        text = _own_doc(models[0])
    return " ".join(text.split()).replace("|", "\\|")


def _section(prefix: str, model: type[BaseModel], lines: list[str], seen: set[str]) -> None:
    rows = []
    nested: list[tuple[str, type[BaseModel]]] = []
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        key = f"{prefix}.{name}" if prefix else name
        rows.append(
            f"| `{key}` | {_type_name(field.annotation)} | {_default(field)} | {_describe(field)} |"
        )
        models = _models_in(field.annotation)
        for sub in models:
            label = key if len(models) == 1 else f"{key} ({_tag(sub) or sub.__name__})"
            nested.append((label, sub))
    if rows:
        doc = _own_doc(model)
        lines += [f"## `{prefix}`" if prefix else "## Top level", ""]
        if doc and prefix:
            lines += [doc, ""]
        lines += ["| key | type | default | description |", "| --- | --- | --- | --- |", *rows, ""]
    for label, sub in nested:
        marker = f"{label}:{sub.__qualname__}"
        if marker in seen:
            continue
        seen.add(marker)
        _section(label, sub, lines, seen)


def render() -> str:
    lines = [_HEADER]
    _section("", SentinelSettings, lines, set())
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
