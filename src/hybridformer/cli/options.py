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


def split_specs(text: str | Sequence[str] | None) -> list[str]:
    """``split_list`` for ``NAME[:key=value,...]`` specs: a comma before ``key=value`` continues the spec before it
    (``-m full,sliding_window:window=64,num_global=2`` is two mechanisms)."""
    specs: list[str] = []
    for item in split_list(text):
        if specs and "=" in item and ":" not in item:
            specs[-1] += f",{item}"
        else:
            specs.append(item)
    return specs


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
    return dict(structured.parse_assignment(item, where=option_name, form="NAME=VALUE (e.g. density=0.5)",
                                            error=ConfigError) for item in items)
