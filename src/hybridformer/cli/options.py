"""The CLI's one parser for list-valued options: ``0.7,0.3``, ``0.7 0.3`` and repeated flags all work.

Every command that takes a list (ensemble or merge ``--weights``, benchmark ``--lengths``,
``--mechanisms``, ``--sizes`` ...) parses it here, so spaces and commas behave alike everywhere
and a bad item is one :class:`~hybridformer.errors.ConfigError` naming the option.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from .. import structured
from ..errors import ConfigError

T = TypeVar("T")


def split_list(text: str | Sequence[str] | None) -> list[str]:
    """Items of a comma- and/or space-separated option (several occurrences of it joined), blanks dropped."""
    if text is None:
        return []
    chunks = [text] if isinstance(text, str) else list(text)
    return [part for chunk in chunks for part in chunk.replace(",", " ").split()]


def parse_list(text: str | Sequence[str] | None, convert: Callable[[str], T], *, option: str,
               example: str) -> list[T]:
    """``split_list`` then ``convert`` each item; a bad item is a ConfigError showing ``example``."""
    items = split_list(text)
    try:
        return [convert(item) for item in items]
    except ValueError:
        raise ConfigError(f"{option} {text!r}: expected comma-separated values such as {example}") from None


def parse_weights(text: str | None) -> list[float] | None:
    """``--weights 0.7,0.3`` (or ``"0.7 0.3"``) -> [0.7, 0.3]; ``@FILE`` reads the weights a
    ``tune-weights`` run wrote (JSON); ``None`` when the option is absent."""
    if text is None:
        return None
    if text.startswith("@"):
        from ..tune import read_weights_file

        return read_weights_file(text[1:])
    try:
        return [float(part) for part in split_list(text)]
    except ValueError:
        raise ConfigError(f"--weights {text!r}: expected comma-separated numbers such as 0.7,0.3") from None


def parse_assignments(items: Sequence[str], *, option_name: str) -> dict[str, Any]:
    """``["density=0.5", "combine=ties"]`` -> ``{"density": 0.5, "combine": "ties"}`` (values read as YAML scalars)."""
    values: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"{option_name} {item!r}: expected NAME=VALUE, e.g. density=0.5")
        try:
            values[name.strip()] = structured.parse(raw, where=option_name, yaml_syntax=True, error=ConfigError)
        except ConfigError:
            raise ConfigError(f"{option_name} {item!r}: cannot read the value {raw!r}") from None
    return values
