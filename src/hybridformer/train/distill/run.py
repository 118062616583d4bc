"""``distill``: train a student on what one teacher — or an ensemble of teachers — predicts.

An ensemble decodes better but costs N models at inference; distillation moves (part of) its
gain into one model (Hinton et al., 2015; Kim & Rush, 2016). Two kinds:

- ``word`` (:class:`~hybridformer.train.distill.kd_loss.WordDistillLoss`): at every target position the
  student's distribution is pulled toward the teachers' combined distribution (KL), mixed with the
  label loss by ``alpha``. The teachers run beside the student inside the normal trainer, plugged
  in as its ``loss``.
- ``sequence`` (:mod:`~hybridformer.train.distill.seqkd`): the teachers beam-decode the training sources
  once (cached in the run directory) and the student trains on those outputs as references.

Everything else is the normal trainer: run directory, checkpoints, EMA, exact ``resume``. The
student must use the teachers' tokenizer (by default it is taken from the first teacher); the
distillation settings are recorded in ``RUN_DIR/distill.json`` and a resume with other settings
is refused, like a resume with another model config.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch

from ... import structured
from ...checkpoint import Checkpoint
from ...config import ExperimentConfig
from ...data.tokenizer import load_tokenizer_file
from ...decoding.ensemble import Combine
from ...errors import ConfigError
from ...filenames import TOKENIZER
from ...inference import check_same_vocabulary, load_checkpoints
from ...outputs import prepare_run_dir
from ..guard import RunLock
from ..setup import load_recipe, model_config_for, read_raw
from ..state import RunDir
from ..trainer import TrainResult, train
from .kd_loss import WordDistillLoss, check_word_options
from .seqkd import cache_meta, cached_data_config, teacher_targets, wait_for_cache, with_references

Kind = Literal["word", "sequence"]
SETTINGS_FILE = "distill.json"


def distill(teachers: Sequence[str | Path], config: ExperimentConfig | str | Path, out: str | Path, *,
            overrides: Sequence[str] = (), kind: Kind = "word", alpha: float = 0.5, temperature: float = 1.0,
            weights: Sequence[float] | None = None, combine: Combine = "prob", beam: int = 5, lenpen: float = 1.0,
            batch_tokens: int = 4096, references: bool = False, resume: bool = False,
            progress: bool = False) -> TrainResult:
    """Distill the checkpoint(s) ``teachers`` into the student described by ``config`` (an experiment YAML).

    ``kind="word"``: loss ``(1 − alpha)·label + alpha·T²·KL(teacher ‖ student)`` at ``temperature``.
    ``kind="sequence"``: train on the teachers' beam outputs (``beam``, ``lenpen``, ``batch_tokens``),
    decoded once into ``out/seqkd/``; ``references=True`` trains on those outputs and the original
    references together. Several teachers act as one ensemble (``weights``, ``combine``).
    Returns the trainer's :class:`~hybridformer.train.TrainResult`.
    """
    if kind not in ("word", "sequence"):
        raise ConfigError(f"--kind must be 'word' or 'sequence', got {kind!r}")
    if kind == "word":
        check_word_options(alpha, temperature)
    if kind == "word" and references:
        raise ConfigError("--with-references mixes references into --kind sequence data; --kind word already "
                          "trains on the references (--alpha weighs them)")
    cfg = config if isinstance(config, ExperimentConfig) else load_recipe(config, overrides)
    run = RunDir(prepare_run_dir(out))
    # one writer: the settings and the sequence-level cache below are written before train() locks too
    with RunLock(run.root, enabled=int(os.environ.get("RANK", "0")) == 0):
        if not resume and run.latest() is not None:
            raise ConfigError(f"{run.root} already holds checkpoints (newest {run.latest().name}); "
                              "pass --resume to continue it or choose another --out")
        if not teachers:
            raise ConfigError("distill needs at least one --teacher checkpoint")
        device = "cuda" if cfg.train.device == "auto" and torch.cuda.is_available() else cfg.train.device
        device = "cpu" if device == "auto" else device
        ckpts = load_checkpoints(teachers, device, task="generate")  # teachers generate, share one vocabulary
        cfg = _student_config(ckpts, cfg, run, resume, label=str(config) if not isinstance(config, ExperimentConfig)
                              else "the student config")
        settings = {"kind": kind, "teachers": [str(Path(c.path).resolve()) for c in ckpts],
                    "weights": list(weights) if weights is not None else None, "combine": combine}
        settings |= ({"alpha": alpha, "temperature": temperature} if kind == "word" else
                     {"beam": beam, "lenpen": lenpen} | ({"references": True} if references else {}))
        rank = int(os.environ.get("RANK", "0"))  # under torchrun only rank 0 writes into the run directory
        if kind == "word":
            loss = WordDistillLoss([c.model for c in ckpts], alpha=alpha, temperature=temperature, weights=weights,
                                   combine=combine, pad_id=cfg.model.pad_id)
            _record_settings(run, settings, resume, write=rank == 0)
            return train(cfg, run.root, resume=resume, progress=progress, loss=loss)
        if cfg.model.arch != "encoder_decoder":
            raise ConfigError("--kind sequence decodes training sources, so it needs an encoder_decoder student "
                              "(use --kind word for a decoder_lm)")
        _record_settings(run, settings, resume, write=rank == 0)
        raw = read_raw(cfg.data, lm=False)
        search = {"beam": beam, "lenpen": lenpen, "batch_tokens": batch_tokens}
        if rank == 0:
            cache = teacher_targets(run.root, ckpts, raw.train, raw.valid, search=search, device=device,
                                    weights=weights, combine=combine)
        else:  # the other processes wait for rank 0's decoding (torchrun stops them all if it fails)
            cache = wait_for_cache(run.root, cache_meta(ckpts, raw.train, search=search, weights=weights,
                                                        combine=combine))
        del ckpts
        train_file = with_references(cache, raw.train, write=rank == 0) if references else None
        cfg = cfg.model_copy(update={"data": cached_data_config(cfg.data, cache, train_file)})
        return train(cfg, run.root, resume=resume, progress=progress)


def _student_config(teachers: Sequence[Checkpoint], cfg: ExperimentConfig, run: RunDir, resume: bool,
                    label: str) -> ExperimentConfig:
    """The student config with the teachers' tokenizer; a student whose vocabulary differs is a CheckpointError.

    Without ``data.tokenizer`` the student takes the first teacher's ``tokenizer.json``; a resumed run keeps
    the tokenizer saved in its run directory (as the trainer does).
    """
    first = teachers[0]
    if first.config.arch != cfg.model.arch:
        raise ConfigError(f"student model.arch={cfg.model.arch!r} but teacher {first.path} is {first.config.arch!r}; "
                          "a student must do the teachers' task")
    if cfg.data.tokenizer is None:
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(
            update={"tokenizer": str(Path(first.path) / TOKENIZER)})})
    source = run.tokenizer if resume and run.tokenizer.exists() else Path(cfg.data.tokenizer)
    tokenizer = load_tokenizer_file(source)
    student = model_config_for(cfg.model, tokenizer)
    check_same_vocabulary([first.path, f"student {label} (tokenizer {source})"], [first.config, student],
                          [first.tokenizer, tokenizer])
    return cfg


def _record_settings(run: RunDir, settings: dict, resume: bool, *, write: bool = True) -> None:
    """Write ``distill.json``; on resume, refuse settings that differ from the recorded ones."""
    file = run.root / SETTINGS_FILE
    if resume and run.latest() is not None and file.exists():
        saved = structured.read(file, mapping=True, error=ConfigError)
        changed = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
        if changed:
            details = "; ".join(f"{k}: {saved.get(k)!r} -> {settings.get(k)!r}" for k in changed)
            raise ConfigError(f"--resume: distillation settings differ from {file} ({details}); "
                              "resume with the original settings or distill into another --out")
        return
    if write:
        run.root.mkdir(parents=True, exist_ok=True)
        file.write_text(json.dumps(settings, indent=1) + "\n")

