"""The one reader of JSON and YAML: every config, checkpoint side file, JSONL record and weights file goes
through it, so hostile input is refused in one line instead of exhausting memory or the stack.

Bounds: a file is read up to ``limit`` bytes (``/dev/zero`` stops there), integers have at most
:data:`MAX_DIGITS` digits, containers nest at most :data:`MAX_DEPTH` deep, and a mapping may not repeat a
key (YAML would silently keep the last value). ``finite=True`` also refuses JSON's ``NaN``/``Infinity``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from .errors import HybridformerError

MAX_BYTES = 64 * 2**20
MAX_DIGITS = 40  # far beyond any count, size or seed, far below Python's 4,300-digit int parsing limit
MAX_DEPTH = 64


class _Refused(ValueError):
    """Raised inside the parsers' hooks; turned into the caller's error class with the location."""


def _json_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_DIGITS:
        raise _Refused(f"an integer with {len(text.lstrip('-'))} digits (at most {MAX_DIGITS})")
    return int(text)


def _no_constant(name: str) -> float:
    raise _Refused(f"{name} is not a number here; give a finite value")


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _Refused(f"duplicate key {key[:60]!r}")
        result[key] = value
    return result


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses repeated keys and huge integers."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if (key_node.tag, key_node.value) in seen:
                    raise _Refused(f"duplicate key {key_node.value[:60]!r} (line {key_node.start_mark.line + 1})")
                seen.add((key_node.tag, key_node.value))
        return super().construct_mapping(node, deep)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        digits = sum(ch.isalnum() for ch in node.value)
        if digits > MAX_DIGITS:
            raise _Refused(f"an integer with {digits} digits (at most {MAX_DIGITS}, line {node.start_mark.line + 1})")
        return super().construct_yaml_int(node)


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)


def parse(text: str, *, where: str, yaml_syntax: bool = False, finite: bool = False, lines: bool = True,
          error: type[HybridformerError]) -> Any:
    """``text`` as JSON (or YAML), or ``error("WHERE[:LINE]: why")`` in one line (``lines=False``: ``where``
    already names the line, as for a JSONL record)."""
    try:
        if yaml_syntax:
            data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
        else:
            data = json.loads(text, parse_int=_json_int, object_pairs_hook=_unique_pairs,
                              parse_constant=_no_constant if finite else None)
    except _Refused as exc:
        raise error(f"{where}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise error(f"{where}{f':{exc.lineno}' if lines else ''}: invalid JSON ({exc.msg})") from None
    except yaml.YAMLError as exc:
        raise error(f"{where}: invalid YAML ({' '.join(str(exc).split())[:240]})") from None
    except RecursionError:
        raise error(f"{where}: nested too deeply (at most {MAX_DEPTH} levels)") from None
    except ValueError as exc:  # e.g. Python's own limit on integer digits
        raise error(f"{where}: {str(exc)[:200]}") from None
    if _depth(data) > MAX_DEPTH:
        raise error(f"{where}: nested too deeply (at most {MAX_DEPTH} levels)")
    return data


def read(path: str | Path, *, yaml_syntax: bool | None = None, finite: bool = False, limit: int = MAX_BYTES,
         mapping: bool = False, error: type[HybridformerError]) -> Any:
    """The JSON (or YAML: ``.yaml``/``.yml`` unless ``yaml_syntax`` says) content of ``path``, read up to
    ``limit`` bytes; ``mapping`` requires an object at the top. Every failure is ``error`` in one line."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(limit + 1)
    except FileNotFoundError:
        raise error(f"{path}: cannot read (no such file)") from None
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(raw) > limit:
        raise error(f"{path}: larger than {limit:,} bytes; not a file this command reads")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise error(f"{path}:{line}: not UTF-8 text (byte {raw[exc.start]:#04x})") from None
    if yaml_syntax is None:
        yaml_syntax = path.suffix in (".yaml", ".yml")
    data = parse(text, where=str(path), yaml_syntax=yaml_syntax, finite=finite, error=error)
    if mapping and not isinstance(data, dict):
        raise error(f"{path}: must hold a {'mapping' if yaml_syntax else 'JSON object'}, got {type(data).__name__}")
    return data


def _depth(data: Any) -> int:
    """Nesting depth of parsed data, without recursion (YAML anchors may share nodes: each is walked once)."""
    deepest, stack, seen = 0, [(data, 1)], set()
    while stack:
        node, level = stack.pop()
        if not isinstance(node, dict | list) or id(node) in seen:
            continue
        seen.add(id(node))
        deepest = max(deepest, level)
        if level > MAX_DEPTH:
            break
        stack.extend((child, level + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def flatten(node: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested mapping as dotted keys (``{"a": {"b": 1}}`` -> ``{"a.b": 1}``); an empty mapping stays a value."""
    flat: dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def parse_assignment(item: str, *, where: str, form: str = "key=value",
                     error: type[HybridformerError]) -> tuple[str, Any]:
    """``"key=value"`` -> ``("key", value)``, the value read as a YAML scalar (``3`` an int, ``ties`` a string):
    the one reader of ``--set``, ``merge --option`` and the options of an attention spec."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise error(f"{where} {item!r} must look like {form}")
    return key.strip(), parse(raw, where=f"{where} {key.strip()}", yaml_syntax=True, error=error)


def parse_spec(text: str, *, where: str, error: type[HybridformerError]) -> tuple[str, dict[str, Any]]:
    """``NAME[:key=value,...]`` -> ``(NAME, options)`` (``:`` between options reads like ``,``): the one syntax of
    an attention mechanism with options, in ``longify --attention`` and ``bench attention -m``."""
    name, _, rest = text.strip().partition(":")
    pairs = filter(None, (p.strip() for p in rest.replace(":", ",").split(",")))
    return name.strip(), dict(parse_assignment(pair, where=where, form=f"key=value (e.g. {name.strip()}:window=64)",
                                               error=error) for pair in pairs)
