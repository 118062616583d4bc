"""The merge methods by name: one file per method, one line here."""

from __future__ import annotations

from .base import MergeMethod
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
