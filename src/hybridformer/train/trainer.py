"""The training loop: AdamW, scheduled lr, label smoothing, accumulation, clipping, EMA, exact resume.

Exact resume rests on three choices: the global RNG is reseeded from ``(seed, step, rank)``
before every step (so no RNG state has to survive a crash), the learning rate is a pure
function of the step, and the data order is a pure function of ``(seed, epoch)`` plus a saved
position. The optimizer state, EMA and counters go into ``trainer_state.pt`` inside the same
atomic checkpoint write as the weights. A run killed at any moment and resumed with
``--resume`` therefore produces the same losses, step for step, as one that never stopped.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import yaml

from ..config import ExperimentConfig
from ..data.batching import BatchStream, DataPosition, collate, make_batches
from ..data.side_files import SideFiles, tokenizer_config_beside
from ..decoding import ModelScorer
from ..engines.torch import TorchEngine
from ..errors import ConfigError
from ..generation import GenerationOptions, stream_outputs
from ..metrics import bleu
from ..models import build_model
from ..outputs import prepare_run_dir
from . import distributed as D
from .ema import EMA
from .guard import RunLock, write_file
from .logging import MetricsLog, ProgressBar
from .losses import TrainLoss, chunked_label_nll, label_smoothed_nll
from .objectives import objective_for
from .precision import resolve_precision, summed
from .recompute import enable_activation_checkpointing
from .saving import RunWriter
from .schedules import build_schedule
from .setup import get_tokenizer, load_recipe
from .signals import StopSignals
from .state import RunDir, check_resumable_config, write_error, write_trainer_state
from .weights import inherit_pruning, load_start


@dataclass
class TrainResult:
    status: Literal["completed", "early_stopped", "diverged", "interrupted"]
    step: int
    best_valid_loss: float
    last_valid_loss: float
    checkpoint: Path | None  # newest step checkpoint
    run_dir: Path
    message: str = ""
    signal: int | None = None  # status "interrupted": the signal that stopped it (SIGINT, SIGTERM)


def train(config: ExperimentConfig | str | Path, out: str | Path, *, overrides: list[str] = (),
          resume: bool = False, progress: bool = False, loss: TrainLoss | None = None) -> TrainResult:
    """Train the model of ``config`` (an ExperimentConfig or a YAML path) into run directory ``out``.

    ``resume=True`` continues from the newest checkpoint in ``out`` exactly where it stopped.
    Works unchanged under ``torchrun`` (one process per device; only rank 0 writes).
    ``loss`` replaces the training objective (see :class:`~hybridformer.train.losses.TrainLoss`, e.g.
    distillation); validation always reports the label NLL, so runs stay comparable.
    """
    if not isinstance(config, ExperimentConfig):
        config = load_recipe(config, overrides)
    prepare_run_dir(out)
    with RunLock(Path(out), enabled=int(os.environ.get("RANK", "0")) == 0):
        env = D.init_distributed(config.train.device)
        try:
            result = _Trainer(config, RunDir(out), env, resume=resume, progress=progress, loss=loss).run()
            D.barrier(env)  # no rank tears its process group down while another still exchanges with it
            return result
        finally:
            D.shutdown(env)


def step_seed(seed: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + step) * 1009 + rank


class _Trainer:
    def __init__(self, cfg: ExperimentConfig, run: RunDir, env: D.DistEnv, *, resume: bool, progress: bool,
                 loss: TrainLoss | None = None) -> None:
        self.cfg, self.run_dir, self.env, self.t, self.loss = cfg, run, env, cfg.train, loss
        self.device = D.resolve_device(self.t.device, env)
        self.bar = ProgressBar(self.t.max_steps, 0, enabled=False)
        if env.is_main:
            run.recover(self.log)
        resume_from = self._check_run_dir(resume)
        if resume_from is not None:
            check_resumable_config(run.config, cfg.model_dump(mode="json"))
        self.objective = objective_for(cfg)
        if self.t.loss_chunk is not None and (cfg.model.arch != "decoder_lm" or env.world_size > 1 or loss):
            raise ConfigError("train.loss_chunk computes a decoder LM's own loss in one process: unset it for "
                              "this model, under torchrun, or with a custom training loss")
        raw = self.objective.read()
        if env.is_main and not (resume_from and run.tokenizer.exists()):
            run.root.mkdir(parents=True, exist_ok=True)
            write_file(run.tokenizer, get_tokenizer(cfg, raw, None).to_str())
            SideFiles(None, tokenizer_config_beside(cfg.data.tokenizer)).write(run.root)  # a chat template
        D.barrier(env)  # the others read the tokenizer rank 0 learned, so all ranks share one vocabulary
        self.tokenizer = get_tokenizer(cfg, raw, run.tokenizer)
        self.side = SideFiles(self.tokenizer, tokenizer_config_beside(run.tokenizer))  # with a chat template
        self.model_cfg = inherit_pruning(self.objective.model_config(self.tokenizer), self.t.init_from)
        self.train_examples, self.valid_examples = self.objective.examples(raw, self.tokenizer, self.log)
        self.bleu_pairs = raw.valid[: cfg.train.eval_bleu] if cfg.model.is_seq2seq else []
        torch.manual_seed(self.t.seed)
        model = build_model(self.model_cfg)
        self.lora, state = load_start(model, self.model_cfg, self.t, resume_from, self.log, fsdp=self._fsdp())
        if self.t.activation_checkpointing:
            enable_activation_checkpointing(model, selective=self.t.activation_checkpointing == "selective")
        self.model = D.wrap_model(model.to(self.device), env, self.t.strategy, self.device)
        self.writer = RunWriter(run, env, self.model_cfg, self.side, self.objective.meta, self._fsdp(), self.lora,
                                self.t.lora)
        self.optimizer = self._optimizer()
        self.ema = EMA(D.unwrap(self.model), self.t.ema_decay) if self.t.ema_decay else None
        self.precision, probe = resolve_precision(self.t.precision, state.get("precision") if state else None,
                                                  self._probe_step, self.device.type, self.log, summed(env))
        self.schedule = build_schedule(self.t.schedule, lr=self.t.lr, warmup_steps=self.t.warmup_steps,
                                       total_steps=self.t.max_steps, min_lr=self.t.min_lr,
                                       decay_fraction=self.t.decay_fraction, decay_shape=self.t.decay_shape)
        self.step, self.best, self.bad_evals, self.last_valid = 0, math.inf, 0, math.nan
        position = DataPosition()
        if state is not None:
            self._restore_state(state)
            position = DataPosition.from_state(state["data"])
        self.stream = BatchStream(self.train_examples, cfg.data.max_tokens, seed=self.t.seed,
                                  per_step=self.t.accumulate * env.world_size, position=position)
        if env.is_main:
            write_file(run.config, yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
            run.truncate_metrics(self.step)  # also drops the events of a run killed before its first checkpoint
        self.metrics = MetricsLog(run.metrics, run.tensorboard, enabled=env.is_main, purge_step=self.step + 1)
        self._saved_step = self.step
        self.bar = ProgressBar(self.t.max_steps, self.step, enabled=progress and env.is_main)
        if probe:
            self.metrics.write("precision", self.step, {"choice": self.precision, **{f"{k}_step_s": v
                                                                                      for k, v in probe.items()}})

    # ------------------------------------------------------------------ setup helpers

    def log(self, message: str) -> None:
        if self.env.is_main:
            self.bar.print(message)

    def _check_run_dir(self, resume: bool) -> Path | None:
        latest = self.run_dir.latest()
        if resume:
            if latest is None:
                self.log(f"no checkpoint in {self.run_dir.checkpoints}; starting from scratch")
            return latest
        if latest is not None:
            raise ConfigError(f"{self.run_dir.root} already holds checkpoints (newest {latest.name}); "
                              "pass --resume to continue it or choose another --out")
        return None

    def _optimizer(self) -> torch.optim.Optimizer:
        """AdamW (Loshchilov & Hutter, 2019); no weight decay on biases, norms and other vectors.

        The fused implementation (one kernel over all parameters; 2.3x faster than the default
        per-tensor loop on this CPU, docs/RESULTS.md) is used wherever it applies (not under FSDP).
        """
        params = [p for p in self.model.parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": self.t.weight_decay},
                  {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=self.t.lr, betas=self.t.betas, eps=self.t.adam_eps,
                                 fused=not self._fsdp())

    def _fsdp(self) -> bool:
        return self.env.active and self.t.strategy == "fsdp"

    def _restore_state(self, state: dict) -> None:
        D.load_optimizer_state(self.model, self.optimizer, state["optimizer"], fsdp=self._fsdp())
        self.step, self.best, self.bad_evals = int(state["step"]), float(state["best"]), int(state["bad_evals"])
        self.last_valid = float(state.get("last_valid", math.nan))
        if self.ema is not None and state.get("ema"):
            self.ema.load_state_dict(state["ema"])

    # ------------------------------------------------------------------ the loop

    def run(self) -> TrainResult:
        status, message = "completed", ""
        since, tokens_seen, step_times = time.perf_counter(), 0, []
        stop_signals = StopSignals()
        try:
            while self.step < self.t.max_steps:
                self.step += 1
                started = time.perf_counter()
                loss, nll, tokens, grad_norm, extras = self._train_step()
                step_times.append(time.perf_counter() - started)
                if not (math.isfinite(loss) and math.isfinite(grad_norm)):
                    latest = self.run_dir.latest()
                    status = "diverged"
                    message = (f"non-finite {'loss' if not math.isfinite(loss) else 'gradient norm'} at step "
                               f"{self.step} (loss={loss}, grad_norm={grad_norm}); stopped without updating. "
                               f"Last good checkpoint: {latest or 'none'}. Lower train.lr, raise "
                               "train.warmup_steps or use precision=fp32, then resume.")
                    self.step -= 1
                    break
                tokens_seen += tokens
                if self.step % self.t.log_every == 0 or self.step == self.t.max_steps:
                    elapsed = max(time.perf_counter() - since, 1e-9)
                    rate = tokens_seen / elapsed
                    lr = self.optimizer.param_groups[0]["lr"]
                    self.metrics.write("train", self.step, {
                        "loss": loss, "nll": nll, "lr": lr, "grad_norm": grad_norm, "tokens_per_s": rate,
                        "step_s": sum(step_times) / len(step_times),  # optimizer steps only: no eval, no saving
                        "epoch": self.stream.position.epoch, **extras})
                    self.bar.update(self.step, loss, lr, rate)
                    since, tokens_seen, step_times = time.perf_counter(), 0, []
                stop = self._maybe_evaluate()
                save_every = self.t.save_every or self.t.eval_every
                if self.step % save_every == 0 or self.step == self.t.max_steps or stop:
                    self._save()
                if stop:
                    status = "early_stopped"
                    message = (f"validation loss did not improve for {self.t.patience} evaluations; "
                               f"best {self.best:.4f}")
                    break
                if stop_signals.requested(self.env):
                    if self._saved_step != self.step:
                        self._save()
                    status = "interrupted"
                    message = (f"interrupted by {stop_signals.name} at step {self.step}; saved "
                               f"{self.run_dir.step_dir(self.step)}; continue with --resume")
                    break
        finally:
            stop_signals.restore()
            self.bar.close()
            self.metrics.close()
        if message:
            self.log(message)
        return TrainResult(status, self.step, self.best, self.last_valid, self.run_dir.latest(),
                           self.run_dir.root, message, stop_signals.signal if status == "interrupted" else None)

    def _train_step(self) -> tuple[float, float, int, float, dict[str, float]]:
        """One optimizer step over this rank's micro-batches.

        Returns global (loss, nll/target, tokens processed, grad norm, extra sums per target). A target
        is a predicted token, or a document for a classifier.
        """
        torch.manual_seed(step_seed(self.t.seed, self.step, self.env.rank))
        batches = self.stream.next_step()[self.env.rank:: self.env.world_size]
        lr = self.schedule(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        totals = torch.zeros(4, dtype=torch.float64)  # sum of per-batch mean losses, nll sum, targets, tokens
        extra_sums: dict[str, torch.Tensor] = {}
        for index, examples in enumerate(batches):
            with D.no_sync_unless(self.model, index == len(batches) - 1):
                loss_sum, nll_sum, count, extras, tokens = self._forward(examples, training=True)
                loss = loss_sum / count.clamp(min=1)
                (loss / len(batches)).backward()
            totals += torch.stack([loss.detach(), nll_sum.detach(), count, tokens]).double().cpu()
            D.accumulate(extra_sums, extras)
        D.all_reduce_sum(totals, self.env)
        extra_totals = D.all_reduce_named(extra_sums, self.env)
        mean_loss = totals[0].item() / (len(batches) * self.env.world_size)
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.t.clip_norm or math.inf)
        grad_norm = float(D.full_tensor(norm))
        if math.isfinite(mean_loss) and math.isfinite(grad_norm):
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update(D.unwrap(self.model))
        self.optimizer.zero_grad(set_to_none=True)
        targets = max(totals[2].item(), 1.0)
        extras = {k: v / targets for k, v in extra_totals.items()}
        return mean_loss, totals[1].item() / targets, int(totals[3].item()), grad_norm, extras

    def _forward(self, examples: list, training: bool = False, precision: str | None = None,
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """(loss sum, label nll sum, targets, extra sums, tokens) of one batch; ``self.loss`` only while training.

        What the model is run on and what it must predict come from ``self.objective``.
        """
        batch = {k: v.to(self.device, non_blocking=True) for k, v in collate(examples, self.model_cfg.pad_id).items()}
        bf16 = (precision or self.precision) == "bf16"
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16)
        target, ignore_index = self.objective.targets(batch)
        if self.t.loss_chunk is not None:
            model = D.unwrap(self.model)
            with autocast:
                sums = chunked_label_nll(model.states(batch["tgt_in"]), model.output, target, chunk=self.t.loss_chunk,
                                         epsilon=self.t.label_smoothing, ignore_index=ignore_index)
            return *sums, {}, self.objective.units(batch, target)
        with autocast:
            logits = self.objective.logits(self.model, batch)

        def label_loss(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            return label_smoothed_nll(scores, target, epsilon=self.t.label_smoothing, ignore_index=ignore_index)

        counts = {k: v.detach() for k, v in self.objective.counts(logits, batch).items()}
        if training and self.loss is not None:
            loss_sum, nll_sum, count, extras = self.loss(logits, batch, label_loss)
        else:
            (loss_sum, nll_sum, count), extras = label_loss(logits), {}
        return loss_sum, nll_sum, count, {**counts, **extras}, self.objective.units(batch, target)

    def _probe_step(self, precision: str) -> None:
        """``precision: auto``: forward + backward of the first training batch (the weights do not change)."""
        first = make_batches([ex.size for ex in self.train_examples], self.cfg.data.max_tokens, seed=self.t.seed,
                             epoch=0)[0]
        loss_sum, _, count, _, _ = self._forward([self.train_examples[i] for i in first], True, precision)
        (loss_sum / count.clamp(min=1)).backward()
        self.model.zero_grad(set_to_none=True)

    # ------------------------------------------------------------------ evaluation and checkpoints

    def _maybe_evaluate(self) -> bool:
        """Validate every ``eval_every`` steps; True when early stopping says stop."""
        if self.step % self.t.eval_every and self.step != self.t.max_steps:
            return False
        valid = self.validation_scores()
        self.last_valid = valid.pop("loss")
        improved = self.last_valid < self.best
        if improved:
            self.best, self.bad_evals = self.last_valid, 0
            try:
                self._write(self.run_dir.best, None)
            except OSError as exc:
                raise write_error(exc, self.step, self.run_dir) from None
        else:
            self.bad_evals += 1
        scores = {"loss": self.last_valid, **self.objective.scores(self.last_valid), "best": self.best, **valid}
        if self.bleu_pairs:
            scores["bleu"] = self.validation_bleu()
        self.metrics.write("valid", self.step, scores)
        bleu = f", BLEU {scores['bleu']:.2f} on {len(self.bleu_pairs)} pairs" if self.bleu_pairs else ""
        counts = "".join(f", {key} {value:.4f}" for key, value in valid.items())
        self.log(f"step {self.step}: valid loss {self.last_valid:.4f} (best {self.best:.4f}){counts}{bleu}")
        return self.t.patience is not None and self.bad_evals >= self.t.patience

    @torch.no_grad()
    def validation_scores(self) -> dict[str, float]:
        """``loss``: NLL per target (nats per token, or per document) over the whole validation set, summed
        across ranks; plus the objective's counts per target (a classifier's ``accuracy``)."""
        model = D.unwrap(self.model)
        model.eval()
        batches = make_batches([ex.size for ex in self.valid_examples], self.cfg.data.max_tokens, seed=0, epoch=0,
                               shuffle=False)
        shard = not self._fsdp()  # FSDP ranks must run the same forwards: each evaluates everything
        mine = batches[self.env.rank:: self.env.world_size] if shard else batches
        totals = torch.zeros(2, dtype=torch.float64)
        sums: dict[str, torch.Tensor] = {}
        for indices in mine:
            _, nll_sum, count, counts, _ = self._forward([self.valid_examples[i] for i in indices])
            totals += torch.stack([nll_sum, count]).double().cpu()
            D.accumulate(sums, counts)
        if shard:
            D.all_reduce_sum(totals, self.env)
        extras = D.all_reduce_named(sums, self.env if shard else D.DistEnv())
        targets = max(totals[1].item(), 1.0)
        return {"loss": totals[0].item() / targets, **{k: v / targets for k, v in extras.items()}}

    def validation_bleu(self) -> float:
        """sacreBLEU of greedy outputs on the first ``train.eval_bleu`` validation pairs (same on every rank)."""
        model = self.writer.model(self.model)
        decoder = TorchEngine(ModelScorer(model), self.tokenizer, self.model_cfg, self.device, "validation")
        sources, references = zip(*self.bleu_pairs, strict=True)
        hypotheses = list(stream_outputs(decoder, sources, GenerationOptions.parse({"beam": 1})))
        return bleu(hypotheses, list(references)).score

    def _save(self) -> None:
        state = {"step": self.step, "best": self.best, "bad_evals": self.bad_evals, "last_valid": self.last_valid,
                 "data": self.stream.position.state_dict(),
                 "optimizer": D.optimizer_state(self.model, self.optimizer, fsdp=self._fsdp()),
                 "ema": self.ema.state_dict() if self.ema is not None else {},
                 "world_size": self.env.world_size, "precision": self.precision}
        try:
            if self.ema is not None:
                state["ema"] = {k: D.full_tensor(v).cpu() if isinstance(v, torch.Tensor) else v
                                for k, v in state["ema"].items()}
                shadow = {k.removeprefix("shadow."): v for k, v in state["ema"].items() if k.startswith("shadow.")}
                self._write(self.run_dir.ema, shadow)
            self._write(self.run_dir.step_dir(self.step), None, write_extra=lambda tmp: write_trainer_state(tmp, state))
            if self.env.is_main:
                self.run_dir.prune(self.t.keep_last)
        except OSError as exc:
            raise write_error(exc, self.step, self.run_dir) from None
        self._saved_step = self.step
        D.barrier(self.env)

    def _write(self, path: Path, ema: dict[str, torch.Tensor] | None, write_extra=None) -> None:
        self.writer.write(path, self.model, ema, step=self.step, valid_loss=self.last_valid, write_extra=write_extra)
