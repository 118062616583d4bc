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

# Step checkpoint directories: step_<N> (zero padding allowed), or the trainer's RUN_DIR/checkpoints/step-<NNNNNN>.
STEP_DIR = re.compile(r"^step[_-](\d+)$")


def average_checkpoints(paths: Sequence[str | Path], out: str | Path) -> Path:
    """Write the element-wise mean of the checkpoints ``paths`` (one architecture) to the checkpoint ``out``."""
    ones = (1.0,) * len(paths)
    return fuse_checkpoints(paths, out, lambda name, models, base: weighted_mean(models, ones),
                            meta={"method": "average"})


def last_checkpoints(run_dir: str | Path, n: int) -> list[Path]:
    """The ``n`` ``step_<N>`` checkpoints of ``run_dir`` with the highest step numbers, oldest first.

    ``run_dir`` may also be a training run directory (``hybridformer train --out``): its step
    checkpoints live in ``checkpoints/step-<NNNNNN>``.
    """
    run_dir = Path(run_dir)
    if n < 1:
        raise CheckpointError(f"--last needs a positive number of checkpoints, got {n}")
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: no such run directory")
    steps = _step_dirs(run_dir) or _step_dirs(run_dir / "checkpoints")
    if len(steps) < n:
        raise CheckpointError(f"{run_dir}: asked for the last {n} checkpoints but found {len(steps)} "
                              "step_<N> directories; lower --last or list the checkpoints explicitly")
    return [path for _, path in steps[-n:]]


def _step_dirs(directory: Path) -> list[tuple[int, Path]]:
    if not directory.is_dir():
        return []
    return sorted((int(m.group(1)), child) for child in directory.iterdir()
                  if child.is_dir() and (m := STEP_DIR.match(child.name)))
