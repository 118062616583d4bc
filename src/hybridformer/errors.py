"""The errors a user may see: each names what is wrong and what is allowed."""

import reprlib

_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother, _SHORT.maxlong = 2, 60, 60, 40
_SHORT.maxdict = _SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxset = 4


def brief(value: object) -> str:
    """A bounded repr for error messages: a billion-laughs YAML anchor or a 10 MB string stays one short line."""
    text = _SHORT.repr(value)
    return text if len(text) <= 100 else text[:97] + "..."


class HybridformerError(Exception):
    """Base class: the CLI prints these as one line, without a traceback."""


class ConfigError(HybridformerError, ValueError):
    """A configuration key or value is invalid (the message names the full key path)."""


class CheckpointError(HybridformerError):
    """A checkpoint directory is missing, corrupt, or does not fit its config."""


class DataError(HybridformerError):
    """Input data is malformed (the message names the file and, where it applies, the line)."""
