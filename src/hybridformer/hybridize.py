"""Hybridize a trained decoder: window + linear attention distilled from its softmax attention (LoLCATs).

Zhang et al. (2024, "LoLCATs: On Low-Rank Linearizing of Large Language Models") linearize a trained
model in two cheap stages. The chosen layers get ``window_linear`` attention (softmax over the last
``window`` keys, learned Hedgehog feature maps over all older ones), every other weight is copied.

1. **Attention transfer**: with the teacher frozen, each new layer's feature maps and window gate learn
   to reproduce the teacher layer's attention output (after its output projection) on the teacher's own
   queries, keys and values (MSE, layer by layer, so one teacher pass trains every layer).
2. **Fine-tune**: the whole student learns the teacher's next-token distributions (KL) on the same text.

Decoding memory is then the window plus a fixed state per layer, whatever the length. The stages keep a
resumable state (weights, optimizer, step, CPU seconds) in ``--out`` beside the student, written
atomically; the finished output is an ordinary checkpoint.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .attention import WindowLinearAttention
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .config import AttentionConfig
from .data.text import read_text
from .errors import CheckpointError, ConfigError, DataError
from .longify import LongifyPlan, longify_checkpoint
from .outputs import prepare_output_dir
from .train.distill.kd_loss import kl_to_teacher
from .train.signals import StopSignals

__all__ = ["HybridizeOptions", "hybridize", "DEFAULT_TEXT"]

STAGES = ("transfer", "finetune")
RECIPE = ("window", "feature_dim", "layers", "seq_len", "transfer_lr", "finetune_lr", "seed")
STATE = "trainer_state.pt"  # the name a resumable checkpoint's state has everywhere (outputs refuse to replace it)
DEFAULT_TEXT = Path(__file__).resolve().parents[3] / "shared" / "data" / "tinyshakespeare" / "input.txt"
Progress = Callable[[str, int, int, float], None]  # (stage, step, steps, loss)


@dataclass(frozen=True)
class HybridizeOptions:
    """What to build and how long to train it; a resumed run must keep the recipe (``RECIPE``), and may change
    the step counts, the budget and ``save_every``."""

    window: int = 64
    feature_dim: int = 64
    layers: str = "all"  # all | 0,2,4 | every:N (longify's --layers)
    seq_len: int = 512
    transfer_steps: int = 200
    finetune_steps: int = 50
    transfer_lr: float = 1e-2
    finetune_lr: float = 1e-5
    budget: float | None = None  # CPU seconds for both stages; the transfer may use 60% of it
    seed: int = 0
    save_every: int = 25

    def check(self) -> None:
        for name in ("window", "feature_dim", "seq_len", "save_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for name in ("transfer_steps", "finetune_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        for name in ("transfer_lr", "finetune_lr"):
            if not 0 < getattr(self, name) < math.inf:
                raise ConfigError(f"--{name.replace('_', '-')} must be a finite number > 0")
        if self.budget is not None and not 0 < self.budget < math.inf:
            raise ConfigError(f"--budget must be a positive number of CPU seconds, got {self.budget}")


def hybridize(ckpt: str | Path, out: str | Path, *, options: HybridizeOptions = HybridizeOptions(),
              data: Sequence[str | Path] | None = None, resume: bool = False, overwrite: bool = False,
              progress: Progress | None = None) -> Path:
    """Write the hybridized checkpoint ``ckpt`` to ``out`` (see the module docstring); returns ``out``.

    ``data``: text files to train on (default: ../shared/data's tinyshakespeare, or a built-in text when
    it is absent). ``resume`` continues the run whose state ``out`` holds."""
    options.check()
    out = Path(out)
    teacher = load_checkpoint(ckpt)
    if teacher.config.arch != "decoder_lm":
        raise ConfigError(f"hybridize works on decoder language models; {ckpt} is a {teacher.config.arch}")
    if teacher.tokenizer is None:
        raise CheckpointError(f"{ckpt}: no tokenizer.json, so no text can be tokenized for the transfer")
    tokens = _tokens(teacher, data, options.seq_len)
    if resume:
        student, state = _resume(out, ckpt, options)
    else:
        prepare_output_dir(out, overwrite=overwrite, inputs=[ckpt])
        student, state = _start(teacher, ckpt, options)
    teacher.model.eval().requires_grad_(False)
    run = _Run(teacher, student, tokens, options, state, out, progress)
    run.stage("transfer", options.transfer_steps, 0.6, run.transfer_loss,
              [p for m in run.hybrid_kernels().values() for p in m.parameters()], options.transfer_lr)
    run.stage("finetune", options.finetune_steps, 1.0, run.finetune_loss, list(student.model.parameters()),
              options.finetune_lr)
    return run.save(final=True)


# ----------------------------------------------------------------------------- setup


def _start(teacher: Checkpoint, ckpt: str | Path, options: HybridizeOptions) -> tuple[Checkpoint, dict[str, Any]]:
    attention = AttentionConfig(name="window_linear", window=options.window, feature_dim=options.feature_dim)
    model, cfg, record = longify_checkpoint(teacher, LongifyPlan(attention, layers=options.layers))
    meta = {**teacher.meta, "hybridize": {"source": str(Path(ckpt)), "options": asdict(options),
                                          "layers": record["stacks"]["decoder"],
                                          "decoding_memory": record["decoding_memory"]}}
    state = {"stage": "transfer", "step": 0, "cpu_seconds": 0.0, "losses": {}, "optimizer": {}}
    return Checkpoint(model, cfg, teacher.tokenizer, Path(ckpt), meta), state


def _resume(out: Path, ckpt: str | Path, options: HybridizeOptions) -> tuple[Checkpoint, dict[str, Any]]:
    if not (out / STATE).is_file():
        raise CheckpointError(f"--resume: {out} holds no {STATE} (no unfinished hybridize run there)")
    student = load_checkpoint(out)
    saved, now = student.meta.get("hybridize", {}).get("options", {}), asdict(options)
    changed = [key for key in RECIPE if saved.get(key) != now[key]]
    if changed:
        raise ConfigError(f"--resume: {out} was started with {changed[0]}={saved.get(changed[0])!r}, not "
                          f"{now[changed[0]]!r}; give the same recipe, or start again with another --out")
    student.meta["hybridize"]["options"] = now  # the budget and step counts may grow
    try:
        state = torch.load(out / STATE, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types on corrupt input
        raise CheckpointError(f"{out / STATE}: corrupt hybridize state ({str(exc)[:200]})") from None
    if not isinstance(state, dict) or state.get("stage") not in ("transfer", "finetune"):
        raise CheckpointError(f"{out / STATE}: not a hybridize state; start again with another --out")
    return student, state


def _tokens(teacher: Checkpoint, data: Sequence[str | Path] | None, seq_len: int) -> Tensor:
    """The training text as one stream of token ids (files joined by blank lines)."""
    if data:
        text = "\n\n".join(read_text(path) for path in data)
    elif DEFAULT_TEXT.is_file():
        text = read_text(DEFAULT_TEXT)
    else:
        text = BUILTIN_TEXT
    ids = teacher.tokenizer.encode(text, add_special_tokens=False).ids
    if not ids:
        raise DataError("the hybridize text has no tokens; give --data files with text")
    while len(ids) <= seq_len:  # a short text repeats (the built-in one, a tiny file)
        ids = ids + ids
    return torch.tensor(ids)


BUILTIN_TEXT = " ".join(
    f"The {noun} by the {place} was {adjective} that {time}, and the people spoke of it for a long while."
    for noun in ("river", "garden", "market", "bridge", "tower") for place in ("hill", "road", "sea", "wood")
    for adjective, time in (("quiet", "morning"), ("busy", "evening"), ("cold", "winter")))


# ----------------------------------------------------------------------------- the two stages


class _Run:
    """One hybridize run: the student, the frozen teacher, the text, and the resumable state."""

    def __init__(self, teacher: Checkpoint, student: Checkpoint, tokens: Tensor, options: HybridizeOptions,
                 state: dict[str, Any], out: Path, progress: Progress | None) -> None:
        self.teacher, self.student, self.tokens, self.options = teacher, student, tokens, options
        self.state, self.out, self.progress = state, out, progress
        self.optimizer: torch.optim.Optimizer | None = None

    def hybrid_kernels(self) -> dict[str, WindowLinearAttention]:
        return {name: m for name, m in self.student.model.named_modules() if isinstance(m, WindowLinearAttention)}

    def batch(self, stage: str, step: int) -> Tensor:
        """A window of ``seq_len`` tokens at a place drawn from (seed, stage, step): a resumed run sees the same."""
        stream = (self.options.seed * 2 + STAGES.index(stage)) * 10**9 + step
        generator = torch.Generator().manual_seed(stream)
        start = int(torch.randint(0, len(self.tokens) - self.options.seq_len, (1,), generator=generator))
        return self.tokens[None, start: start + self.options.seq_len]

    def transfer_loss(self, tokens: Tensor) -> Tensor:
        """Σ over hybrid layers of MSE(student layer output, teacher layer output), on the teacher's q, k, v."""
        captured: dict[str, tuple[Tensor, ...]] = {}
        kernels = self.hybrid_kernels()
        hooks = [self.teacher.model.get_submodule(name).register_forward_hook(
            lambda module, args, output, name=name: captured.__setitem__(name, (*args, output)))
            for name in kernels]
        try:
            with torch.no_grad():
                self.teacher.model.states(tokens)  # the layers only: no vocabulary projection
        finally:
            for hook in hooks:
                hook.remove()
        loss = tokens.new_zeros((), dtype=torch.float32)
        for name, kernel in kernels.items():
            q, k, v, target = captured[name]
            mixer = self.student.model.get_submodule(name.rsplit(".", 1)[0])
            mine = mixer.merge_heads(kernel(q, k, v, causal=True))
            loss = loss + nn.functional.mse_loss(mine, mixer.merge_heads(target))
        return loss / len(kernels)

    def finetune_loss(self, tokens: Tensor) -> Tensor:
        """KL(teacher ‖ student) per token of the next-token distributions."""
        with torch.no_grad():
            teacher = torch.log_softmax(self.teacher.model(tokens).float(), dim=-1)
        return kl_to_teacher(self.student.model(tokens), teacher).mean()

    def stage(self, name: str, steps: int, budget_share: float, loss_fn: Callable[[Tensor], Tensor],
              params: list[nn.Parameter], lr: float) -> None:
        """Train ``params`` (only they) on ``loss_fn`` until ``steps`` or the CPU budget; save as it goes."""
        if self.state["stage"] == "done" or STAGES.index(self.state["stage"]) > STAGES.index(name):
            return
        model = self.student.model
        model.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        self.optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
        if self.state["stage"] == name and self.state["optimizer"]:
            self.optimizer.load_state_dict(self.state["optimizer"])
        self.state["stage"] = name
        model.train()
        limit = None if self.options.budget is None else self.options.budget * budget_share
        losses = self.state["losses"].setdefault(name, [])
        signals = StopSignals()  # Ctrl-C: finish the step, save, stop (resumes exactly)
        try:
            while self.state["step"] < steps and (limit is None or self.state["cpu_seconds"] < limit):
                self._step(name, steps, loss_fn, losses)
                if signals.signal is not None:
                    self.save()
                    raise KeyboardInterrupt
        finally:
            signals.restore()
        model.eval()
        self.state.update(stage="finetune" if name == "transfer" else "done", step=0, optimizer={})
        self.optimizer = None

    def _step(self, name: str, steps: int, loss_fn: Callable[[Tensor], Tensor], losses: list[float]) -> None:
        started = time.process_time()
        loss = loss_fn(self.batch(name, self.state["step"]))
        if not torch.isfinite(loss):
            raise ConfigError(f"hybridize {name}: the loss is {loss.item()} at step {self.state['step']}; "
                              "lower the learning rate")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.state["step"] += 1
        self.state["cpu_seconds"] += time.process_time() - started
        losses.append(float(f"{loss.item():.6g}"))
        if self.progress is not None:
            self.progress(name, self.state["step"], steps, loss.item())
        if self.state["step"] % self.options.save_every == 0:
            self.save()

    def save(self, *, final: bool = False) -> Path:
        """The student as a checkpoint; unless ``final``, with the state to resume from (one atomic write)."""
        meta = dict(self.student.meta)
        record = dict(meta["hybridize"])
        record.update(cpu_seconds=round(self.state["cpu_seconds"], 1),
                      losses={k: {"first": v[0], "last": v[-1], "steps": len(v)}
                              for k, v in self.state["losses"].items() if v})
        meta["hybridize"] = record
        state = {**self.state, "optimizer": self.optimizer.state_dict() if self.optimizer else {}}

        def write_state(tmp: Path) -> None:
            torch.save(state, tmp / STATE)

        return save_checkpoint(self.out, self.student.model, self.student.config, self.student.tokenizer,
                               meta=meta, write_extra=None if final else write_state)
