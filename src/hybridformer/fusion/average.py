"""Checkpoint averaging: the plain mean of several checkpoints of one training run.

Averaging the last few checkpoints of a run smooths the noise of the final SGD steps and
usually gains a little BLEU for free (Vaswani et al., 2017 averaged the last 5/20 checkpoints;
fairseq's ``average_checkpoints.py --num-update-checkpoints N`` is the model for ``--last N``).
It streams tensor by tensor, so memory stays near one model whatever the number of inputs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from ..errors import CheckpointError
from .merge.linear import weighted_mean
from .streaming import fuse_checkpoints

# Step checkpoint directories: the trainer's RUN_DIR/checkpoints/step-<N> or a plain directory of step_<N>
# (zero padding allowed either way); best/, last/, ema/ and anything else are ignored.
STEP_DIR = re.compile(r"^step[-_](\d+)$")


def average_checkpoints(paths: Sequence[str | Path], out: str | Path) -> Path:
    """Write the element-wise mean of the checkpoints ``paths`` (one architecture) to the checkpoint ``out``."""
    ones = (1.0,) * len(paths)
    return fuse_checkpoints(paths, out, lambda name, models, base: weighted_mean(models, ones),
                            meta={"method": "average"})


def last_checkpoints(run_dir: str | Path, n: int) -> list[Path]:
    """The ``n`` step checkpoints of ``run_dir`` with the highest step numbers, oldest first.

    ``run_dir`` is a trainer run directory (its ``checkpoints/step-<N>``) or any directory of ``step_<N>``.
    """
    run_dir = Path(run_dir)
    if n < 1:
        raise CheckpointError(f"--last needs a positive number of checkpoints, got {n}")
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: no such run directory")
    if (run_dir / "checkpoints").is_dir():
        run_dir = run_dir / "checkpoints"
    steps = sorted((int(m.group(1)), child) for child in run_dir.iterdir()
                   if child.is_dir() and (m := STEP_DIR.match(child.name)))
    if len(steps) < n:
        raise CheckpointError(f"{run_dir}: asked for the last {n} checkpoints but found {len(steps)} "
                              "step-<N>/step_<N> directories; lower --last or list the checkpoints explicitly")
    return [path for _, path in steps[-n:]]
