"""The errors a user may see: each names what is wrong and what is allowed."""


class HybridformerError(Exception):
    """Base class: the CLI prints these as one line, without a traceback."""


class ConfigError(HybridformerError, ValueError):
    """A configuration key or value is invalid (the message names the full key path)."""


class CheckpointError(HybridformerError):
    """A checkpoint directory is missing, corrupt, or does not fit its config."""


class DataError(HybridformerError):
    """Input data is malformed (the message names the file and, where it applies, the line)."""
