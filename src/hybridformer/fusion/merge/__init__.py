"""Weight merging: one file per method behind one interface (``base.MergeMethod``), named in ``METHODS``."""

from .api import describe_methods, merge_checkpoints, method_options, resolve_options
from .base import MergeMethod, MergeOptions
from .registry import METHODS

__all__ = ["METHODS", "MergeMethod", "MergeOptions", "describe_methods", "merge_checkpoints", "method_options",
           "resolve_options"]
