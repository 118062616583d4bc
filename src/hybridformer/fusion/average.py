"""Checkpoint averaging: the plain mean of several checkpoints of one training run.

Averaging the last few checkpoints of a run smooths the noise of the final SGD steps and
usually gains a little BLEU for free (Vaswani et al., 2017 averaged the last 5/20 checkpoints;
fairseq's ``average_checkpoints.py --num-update-checkpoints N`` is the model for ``--last N``).
It streams tensor by tensor, so memory stays near one model whatever the number of inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..errors import CheckpointError
from ..lora import is_adapter_only
from .merge.adapters import merge_adapters
from .merge.linear import weighted_mean
from .streaming import fuse_checkpoints


def average_checkpoints(paths: Sequence[str | Path], out: str | Path) -> Path:
    """Write the element-wise mean of the checkpoints ``paths`` (one architecture) to the checkpoint ``out``.

    LoRA adapters of one base (a LoRA run's step checkpoints) average their updates ``ΔW``, not their factors."""
    if paths and all(is_adapter_only(p) for p in paths):
        return merge_adapters(paths, "linear", out)
    ones = (1.0,) * len(paths)
    return fuse_checkpoints(paths, out, lambda name, models, base: weighted_mean(models, ones),
                            meta={"method": "average"})


def last_checkpoints(run_dir: str | Path, n: int) -> list[Path]:
    """The ``n`` newest complete step checkpoints of the training run ``run_dir``, oldest first."""
    from ..train.state import RunDir

    run_dir = Path(run_dir)
    if n < 1:
        raise CheckpointError(f"--last needs a positive number of checkpoints, got {n}")
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: no such run directory")
    steps = RunDir(run_dir).step_checkpoints()
    if len(steps) < n:
        raise CheckpointError(f"{run_dir}: asked for the last {n} checkpoints but found {len(steps)} step "
                              "checkpoints under checkpoints/; lower --last or list the checkpoints explicitly")
    return steps[-n:]
