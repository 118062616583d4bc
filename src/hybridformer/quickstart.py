"""``hybridformer quickstart``: a first run that shows the whole toolkit.

It takes 150 CPU-seconds (87 s wall on an idle 2-core CPU).

On the built-in ``numbers`` task (digits -> English words, generated offline) it trains a plain
Transformer (Vaswani et al., 2017) and a Conformer-encoder model (Gulati et al., 2020), decodes the
held-out test set with beam search, then evaluates two kinds of model fusion: the ensemble of both
models (their per-step probabilities averaged) and, for each model, the average of its last
checkpoints (Vaswani et al., 2017). Everything goes through the public API — ``train``,
``generate``, ``average_checkpoints``, the metrics — so the quickstart is also a worked example.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import resource
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .checkpoint import load_checkpoint
from .config import ExperimentConfig, parse_config
from .data.tasks import make_task
from .errors import ConfigError
from .evaluate import evaluate
from .fusion import average_checkpoints, last_checkpoints
from .generation import generate
from .metrics import bleu, chrf
from .train import RunDir, TrainResult, read_metrics, train

TASK, N_TRAIN, N_VALID = "numbers", 5000, 300
AVERAGE_LAST = 3  # step checkpoints averaged per model; the trainer keeps exactly these (keep_last)

# Sized so each model learns the task in about a minute on 2 CPU cores (docs/RESULTS.md#quickstart).
MODEL = {"arch": "encoder_decoder", "d_model": 64, "heads": 4, "ffn_dim": 256, "dropout": 0.1,
         "position": "sinusoidal", "encoder": {"layers": 2}, "decoder": {"layers": 2}}
MODELS = {
    "transformer": {},
    "conformer": {"encoder": {"layers": 2, "layer": "conformer", "conv": {"kernel_size": 7}}},
}
STEPS, FAST_STEPS = 800, 10
# Outputs are ~10x longer than inputs (7 digits -> up to 77 characters), beyond generate's default 1.2·src_len+10.
MAX_LEN = {"max_len_a": 0.0, "max_len_b": 100}
FAST_SIZES = (200, 20)  # --fast: train/valid examples (the test set is as large as valid)


@dataclass
class Row:
    """One line of the summary table."""

    name: str
    checkpoints: list[str]  # one for a model or an average, several for an ensemble
    params: int
    valid_loss: float | None  # nats per target token; None for an ensemble (not one model)
    exact_match: float  # % of test outputs equal to the reference
    bleu: float
    chrf: float
    tokens_per_s: float | None  # training target tokens/s; None for fused models (not trained)
    train_s: float | None
    decode_s: float


@dataclass
class QuickstartResult:
    out: Path
    rows: list[Row]
    test_src: Path
    test_ref: Path
    test_examples: int
    beam: int
    steps: int
    jobs: int
    threads: int
    wall_s: float
    cpu_s: float  # CPU seconds of this process and its workers (a whole interpreter's, startup included)
    commands: list[str] = field(default_factory=list)

    def save(self) -> Path:
        path = self.out / "quickstart.json"
        data = asdict(self) | {"out": str(self.out), "test_src": str(self.test_src), "test_ref": str(self.test_ref)}
        path.write_text(json.dumps(data, indent=2) + "\n")
        return path


def experiment(name: str, steps: int, seed: int, n_train: int = N_TRAIN, n_valid: int = N_VALID) -> ExperimentConfig:
    """The training recipe of quickstart model ``name`` for ``steps`` optimizer steps."""
    save_every = max(1, steps // 10)  # the last AVERAGE_LAST saves span the final ~30% of training
    return parse_config(ExperimentConfig, {
        "model": MODEL | MODELS[name],
        "data": {"builtin": TASK, "builtin_train": n_train, "builtin_valid": n_valid, "max_tokens": 2048},
        "train": {"max_steps": steps, "lr": 3e-3, "schedule": "cosine", "warmup_steps": min(40, steps // 5),
                  "label_smoothing": 0.1, "eval_every": steps, "save_every": save_every,
                  "keep_last": AVERAGE_LAST, "log_every": max(1, steps // 20), "seed": seed, "device": "cpu"},
    })


def quickstart(out: str | Path = "hybridformer-quickstart", *, steps: int | None = None, fast: bool = False,
               seed: int = 1, jobs: int = 2, threads: int = 1, beam: int = 4, overwrite: bool = False,
               progress: bool = False, log: Callable[[str], None] = print) -> QuickstartResult:
    """Train, decode, fuse and score; returns the summary (also written to ``OUT/quickstart.json``).

    The two models train at once in ``jobs`` processes of ``threads`` CPU threads each: models this
    small gain little from a second thread, and OpenMP threads on a busy machine can make every
    tiny op wait for a descheduled peer (measured 4-50x slower; docs/RESULTS.md#quickstart).
    ``fast`` shortens everything (a few steps, less data) for tests: the pipeline runs, the models
    do not learn.
    """
    out = Path(out)
    steps = steps if steps is not None else (FAST_STEPS if fast else STEPS)
    if min(steps, jobs, threads, beam) < 1:
        raise ConfigError(f"steps, jobs, threads and beam must be >= 1 (got {steps}, {jobs}, {threads}, {beam})")
    _prepare(out, overwrite)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _run(out, steps, fast, seed, jobs, threads, beam, progress, log)
    finally:
        torch.set_num_threads(before)


def _prepare(out: Path, overwrite: bool) -> None:
    owned = [out / name for name in ("data", "quickstart.json", *MODELS, *(f"{m}-avg" for m in MODELS))]
    found = [p for p in owned if p.exists()]
    if found and not overwrite:
        raise ConfigError(f"{out} already holds a quickstart run ({found[0].name}); pass --overwrite to replace it "
                          "or choose another --out")
    for path in found:
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def _train_one(name: str, out: Path, steps: int, seed: int, sizes: tuple[int, int], threads: int,
               progress: bool) -> tuple[TrainResult, float]:
    """Train quickstart model ``name`` (in a worker process when several train at once); returns (result, seconds)."""
    torch.set_num_threads(threads)
    began = time.perf_counter()
    result = train(experiment(name, steps, seed, *sizes), out / name, progress=progress)
    if result.status == "interrupted":  # Ctrl-C: the trainer saved a checkpoint; stop the whole quickstart
        raise KeyboardInterrupt
    return result, time.perf_counter() - began


def _train_all(out: Path, steps: int, seed: int, sizes: tuple[int, int], jobs: int, threads: int,
               progress: bool) -> dict[str, tuple[TrainResult, float]]:
    if jobs == 1:
        return {name: _train_one(name, out, steps, seed, sizes, threads, progress) for name in MODELS}
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {name: pool.submit(_train_one, name, out, steps, seed, sizes, threads, False) for name in MODELS}
        return {name: future.result() for name, future in futures.items()}


def _run(out: Path, steps: int, fast: bool, seed: int, jobs: int, threads: int, beam: int, progress: bool,
         log: Callable[[str], None]) -> QuickstartResult:
    start = time.perf_counter()
    sizes = FAST_SIZES if fast else (N_TRAIN, N_VALID)
    task = make_task(TASK, *sizes)  # the same split the trainer generates from data.builtin
    files = task.write(out / "data")
    sources, references = [s for s, _ in task.test], [t for _, t in task.test]
    log(f"training {' and '.join(MODELS)} for {steps} steps each ({jobs} at once, {threads} thread(s) each) ...")
    trained = _train_all(out, steps, seed, sizes, min(jobs, len(MODELS)), threads, progress)
    rows: list[Row] = []
    for name, (result, train_s) in trained.items():
        rates = [e["tokens_per_s"] for e in read_metrics(out / name / "metrics.jsonl") if e["kind"] == "train"]
        rows.append(_score(name, [result.checkpoint], sources, references, beam, result.last_valid_loss,
                           sum(rates) / len(rates), train_s))
    final = {name: result.checkpoint for name, (result, _) in trained.items()}
    rows.append(_score("ensemble", list(final.values()), sources, references, beam))
    for name in MODELS:
        paths = last_checkpoints(out / name, min(AVERAGE_LAST, len(RunDir(out / name).step_checkpoints())))
        averaged = average_checkpoints(paths, out / f"{name}-avg")
        log(f"averaged {name} checkpoints {', '.join(p.name for p in paths)} -> {averaged}")
        valid = evaluate(averaged, files["valid_src"], files["valid_tgt"], metric="ppl")
        rows.append(_score(f"{name} avg{len(paths)}", [averaged], sources, references, beam, math.log(valid.score)))
    result = QuickstartResult(out, rows, files["test_src"], files["test_tgt"], len(sources), beam, steps, jobs,
                              threads, time.perf_counter() - start, _cpu_seconds(),
                              next_commands(out, final, files["test_src"], files["test_tgt"], beam))
    result.save()
    return result


def _cpu_seconds() -> float:
    """CPU time of this process and its finished workers (the wall time also counts other jobs' load)."""
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def _score(name: str, checkpoints: Sequence[Path], sources: list[str], references: list[str], beam: int,
           valid_loss: float | None = None, tokens_per_s: float | None = None,
           train_s: float | None = None) -> Row:
    """Beam-decode ``sources`` (timed) and score the outputs against ``references``."""
    params = sum(p.numel() for c in checkpoints for p in load_checkpoint(c).model.parameters())
    began = time.perf_counter()
    hypotheses = list(generate(list(checkpoints), sources, beam=beam, **MAX_LEN))
    decode_s = time.perf_counter() - began
    exact = 100.0 * sum(h == r for h, r in zip(hypotheses, references, strict=True)) / len(references)
    return Row(name, [str(c) for c in checkpoints], params, valid_loss, exact, bleu(hypotheses, references).score,
               chrf(hypotheses, references).score, tokens_per_s, train_s, decode_s)


def next_commands(out: Path, final: dict[str, Path], test_src: Path, test_ref: Path, beam: int) -> list[str]:
    """Commands to try on the quickstart's own checkpoints."""
    t, c = (str(final[name]) for name in MODELS)
    budget = f"--beam {beam} --max-len-a {MAX_LEN['max_len_a']:g} --max-len-b {MAX_LEN['max_len_b']}"
    return [
        f"echo 1204 | hybridformer generate {t} --input - {budget}",
        f"hybridformer evaluate {t} --src {test_src} --ref {test_ref} --metric chrf {budget}",
        f"hybridformer evaluate {t} {c} --src {test_src} --ref {test_ref} --metric bleu {budget}   # ensemble",
        f"hybridformer average --last {AVERAGE_LAST} {out / 'conformer'} --out {out / 'conformer-avg'}",
        f"hybridformer evaluate {out / 'transformer-avg'} --src {out / 'data' / 'valid.src'} "
        f"--ref {out / 'data' / 'valid.tgt'} --metric ppl",
    ]
