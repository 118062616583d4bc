"""The run directory: step checkpoints with trainer state, best and EMA exports, metrics logs.

Layout of ``RUN_DIR``::

    config.yaml            the resolved experiment config
    tokenizer.json
    metrics.jsonl          one JSON object per log/eval event
    tb/                    TensorBoard events
    checkpoints/step-000200/   model.safetensors config.json tokenizer.json meta.json trainer_state.pt
    checkpoints/best/      the weights with the lowest validation loss
    checkpoints/ema/       the EMA weights (when train.ema_decay is set)

A step checkpoint is written in one atomic rename (``save_checkpoint(write_extra=...)``), so after a
SIGKILL the newest ``step-*`` directory is always complete. ``trainer_state.pt`` holds only
tensors and plain numbers and is read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch

from .. import structured
from ..errors import CheckpointError, ConfigError, DataError, brief
from ..filenames import ADAPTER_WEIGHTS, CONFIG, TOKENIZER, TRAINER_STATE, WEIGHTS
from ..outputs import atomic_file, refuse_links
from .guard import NO_LINKS, recover

PREFIX = "step-"
STEP_FILES = (CONFIG, TRAINER_STATE)
WEIGHT_FILES = (WEIGHTS, ADAPTER_WEIGHTS)  # a full checkpoint, or a LoRA run's adapter


class RunDir:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.checkpoints = self.root / "checkpoints"
        self.metrics = self.root / "metrics.jsonl"
        self.tokenizer = self.root / TOKENIZER
        self.config = self.root / "config.yaml"
        self.tensorboard = self.root / "tb"
        self.best = self.checkpoints / "best"
        self.ema = self.checkpoints / "ema"

    def step_dir(self, step: int) -> Path:
        return self.checkpoints / f"{PREFIX}{step:06d}"

    def step_checkpoints(self) -> list[Path]:
        """Complete step checkpoints, oldest first."""
        if not self.checkpoints.is_dir():
            return []
        found = [p for p in self.checkpoints.iterdir()
                 if p.name.startswith(PREFIX) and p.name[len(PREFIX):].isdigit() and is_complete(p)]
        return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))

    def latest(self) -> Path | None:
        found = self.step_checkpoints()
        return found[-1] if found else None

    def prune(self, keep_last: int) -> None:
        """Delete all but the newest ``keep_last`` step checkpoints (best and ema are separate)."""
        for old in self.step_checkpoints()[:-keep_last]:
            doomed = old.parent / f".{old.name}.del-{uuid.uuid4().hex[:8]}"
            os.replace(old, doomed)  # one atomic step: a kill mid-delete leaves a name recover() removes
            shutil.rmtree(doomed, ignore_errors=True)

    def recover(self, log) -> None:  # noqa: ANN001 - a print-like callable
        """On start and resume (under the run lock): refuse planted links, then undo what a kill left."""
        refuse_links([self.checkpoints, self.metrics, self.tokenizer, self.config, self.tensorboard, self.best,
                      self.ema], NO_LINKS)
        recover(self.checkpoints, is_complete, log)

    def truncate_metrics(self, step: int) -> None:
        """On start and resume: forget events logged after ``step`` (0 for a run without checkpoints), so
        the curve continues seamlessly; a line cut short by a kill is dropped too."""
        if not self.metrics.exists():
            return
        kept = []
        for line in self.metrics.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                event = structured.parse(line, where=str(self.metrics), error=DataError)
            except DataError:
                continue  # the partial last line of a killed run
            if isinstance(event, dict) and isinstance(event.get("step", 0), int) and event.get("step", 0) <= step:
                kept.append(line)
        with atomic_file(self.metrics) as handle:
            handle.write("".join(line + "\n" for line in kept))


# What --resume may change: how long to train and how often to evaluate, log and save. Anything else (model,
# data, seed, optimizer) would make the continuation differ from an uninterrupted run.
RESUME_SAFE = ("train.max_steps", "train.eval_every", "train.log_every", "train.save_every", "train.keep_last",
               "train.patience")


def check_resumable_config(saved_file: Path, now: dict[str, Any]) -> None:
    """``--resume`` continues exactly only with the config the run was started with (``RUN/config.yaml``),
    apart from :data:`RESUME_SAFE`; any other change is a ConfigError naming the keys."""
    if not saved_file.is_file():
        return
    saved = structured.flatten(structured.read(saved_file, yaml_syntax=True, mapping=True, error=ConfigError))
    current = structured.flatten(now)
    changed = [key for key in sorted(set(saved) | set(current))
               if saved.get(key) != current.get(key) and key not in RESUME_SAFE]
    if changed:
        details = "; ".join(f"{key}: {brief(saved.get(key))} -> {brief(current.get(key))}" for key in changed[:4])
        more = f" (and {len(changed) - 4} more)" if len(changed) > 4 else ""
        raise ConfigError(f"--resume: the config differs from {saved_file} in {details}{more}; a run continues "
                          f"exactly only with its own settings (changeable: {', '.join(RESUME_SAFE)}); "
                          "restore them or train into another --out")



def is_complete(step_dir: Path) -> bool:
    """A step checkpoint with all its files (a half-deleted or half-copied one is not)."""
    return (step_dir.is_dir() and not step_dir.is_symlink() and all((step_dir / f).is_file() for f in STEP_FILES)
            and any((step_dir / f).is_file() for f in WEIGHT_FILES))


def write_trainer_state(directory: Path, state: dict[str, Any]) -> None:
    with open(directory / TRAINER_STATE, "wb") as handle:  # a Python file: a full disk keeps its errno
        torch.save(state, handle)


def read_trainer_state(checkpoint: Path) -> dict[str, Any]:
    """Optimizer/EMA tensors and counters; never unpickles arbitrary objects."""
    file = checkpoint / TRAINER_STATE
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{checkpoint}: missing {TRAINER_STATE}; it is not a resumable checkpoint") from None
    except Exception as exc:  # torch.load raises many types on corrupt input
        raise CheckpointError(f"{file}: corrupt trainer state ({str(exc)[:200]})") from None
    problem = _state_problem(state)
    if problem:
        raise CheckpointError(f"{file}: not a trainer state written by hybridformer ({problem}); "
                              "resume from another step-* checkpoint or start a new run")
    return state


def _state_problem(state: Any) -> str | None:
    """What is wrong with a loaded trainer state, or None (types and ranges of every field the loop reads)."""
    if not isinstance(state, dict):
        return f"expected a dict, got {type(state).__name__}"
    missing = [k for k in ("step", "best", "bad_evals", "data", "optimizer") if k not in state]
    if missing:
        return f"missing {', '.join(missing)}"
    for key in ("step", "bad_evals"):
        if type(state[key]) is not int or state[key] < 0:
            return f"{key} must be a non-negative integer, got {state[key]!r:.40}"
    if not isinstance(state["best"], (int, float)) or math.isnan(state["best"]):
        return f"best must be a number, got {state['best']!r:.40}"
    for key in ("data", "optimizer"):
        if not isinstance(state[key], dict):
            return f"{key} must be a dict, got {type(state[key]).__name__}"
    if any(type(state["data"].get(k)) is not int or state["data"][k] < 0 for k in ("epoch", "batch")):
        return "data must hold non-negative integers epoch and batch"
    if not isinstance(state.get("ema", {}), dict):
        return "ema must be a dict"
    return None


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All events of a ``metrics.jsonl`` (for tests, plots and reports)."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def write_error(exc: OSError, step: int, run: RunDir) -> DataError:
    """A full disk or a read-only run directory while saving: one line that says what survived."""
    latest = run.latest()
    kept = (f"the checkpoints already written are intact (newest {latest.name}); free the space or fix the "
            "permissions, then --resume" if latest else "no checkpoint had been written yet")
    what = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
            errno.EROFS: "the file system is read-only"}.get(exc.errno, exc.strerror or str(exc))
    code = f" ({errno.errorcode.get(exc.errno, exc.errno)})" if exc.errno else ""
    return DataError(f"cannot save step {step} to {exc.filename or run.checkpoints}: {what}{code}; {kept}")
