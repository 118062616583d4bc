"""The strict base of every config section, and loading: YAML plus ``a.b=c`` overrides, validated into one
readable :class:`ConfigError` naming the full key path, the bad value and what is allowed."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from .. import structured
from ..errors import ConfigError, brief


class Strict(BaseModel):
    # NaN/inf are never a meaningful setting (``lr=inf`` would diverge and exit 0)
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=(), allow_inf_nan=False)


M = TypeVar("M", bound=BaseModel)
def parse_config(cls: type[M], data: dict[str, Any], *, prefix: str = "") -> M:
    """Validate ``data`` as ``cls``, turning pydantic's report into one readable ConfigError."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(cls, exc, prefix)) from None


def _describe(cls: type[BaseModel], exc: ValidationError, prefix: str) -> str:
    lines = []
    for err in exc.errors():
        loc = [str(p)[:40] for p in err["loc"]]
        path = ".".join(([prefix] if prefix else []) + loc) or "config"
        if err["type"] == "extra_forbidden":
            allowed = _fields_at(cls, err["loc"][:-1])
            lines.append(f"{path}: unknown key; allowed keys: {', '.join(allowed)}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            shown = "input" in err and not isinstance(err["input"], dict)
            lines.append(f"{path}: {msg} (got {brief(err['input'])})" if shown else f"{path}: {msg}")
    shown_lines = lines[:5] + ([f"... and {len(lines) - 5} more"] if len(lines) > 5 else [])
    return "; ".join(shown_lines)


def _fields_at(cls: type[BaseModel], loc: tuple) -> list[str]:
    for part in loc:
        field = cls.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        cls = annotation
    return sorted(cls.model_fields)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (values parsed as YAML) to a nested dict, in place."""
    for item in overrides:
        key, value = structured.parse_assignment(item, where="--set", form="key.path=value", error=ConfigError)
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return data


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (or JSON) mapping; a missing or malformed file is a ConfigError."""
    path = Path(path)
    data = structured.read(path, yaml_syntax=path.suffix != ".json", error=ConfigError)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    return data

