"""Weight merging: one file per method behind one interface (``base.MergeMethod``), named in ``METHODS``."""

from .base import MergeMethod, MergeOptions
from .dare import Dare
from .linear import Linear
from .slerp import Slerp
from .task_arithmetic import TaskArithmetic
from .ties import Ties

METHODS: dict[str, MergeMethod] = {
    "linear": Linear(),
    "slerp": Slerp(),
    "task_arithmetic": TaskArithmetic(),
    "ties": Ties(),
    "dare": Dare(),
}

from .api import merge_checkpoints, resolve_options  # noqa: E402  (api looks methods up in METHODS)

__all__ = ["METHODS", "MergeMethod", "MergeOptions", "merge_checkpoints", "resolve_options"]
