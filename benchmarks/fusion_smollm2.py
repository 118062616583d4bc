"""Fusion on a real base: fine-tune converted SmolLM2-135M-Instruct on two tasks, merge the fine-tunes, score all.

Every model-touching step goes through the ``hybridformer`` CLI (convert, train, merge, evaluate, generate), so
the commands in docs/RESULTS.md ("Merging fine-tunes of a pretrained base") are exactly what ran. Stages (each skips
work whose output already exists, so a stopped run resumes; results accumulate in ``OUT/results.json``):

  data     task A = Tiny Shakespeare (first 90% train, the held-out tail cut to ``--valid-blocks`` blocks);
           task B = SciTLDR-A as LM text, one example a line: ``<abstract> TL;DR: <author TLDR>``
           (train split; the valid text is the first dev examples filling ``--valid-blocks`` blocks;
           ROUGE prompts are the next ``--rouge-n`` dev examples, cut after ``TL;DR:``)
  convert  ``hybridformer convert`` the GGUF into OUT/base
  train    two fine-tunes from the base (``train.init_from``): OUT/ft-shakespeare, OUT/ft-scitldr; with ``--lora``
           LoRA adapters instead (rank 16 on all 7 projections, ``train.lora``), whose checkpoints are PEFT folders
  merge    ``hybridformer merge`` of the two fine-tunes with --base OUT/base: the entries of MERGES named by --merges
           (adapters merge through their full ΔW with ``merge --adapter``, the same methods and options)
  tune     each task's weight of a task-arithmetic merge chosen on held-out text of its own (Shakespeare's lines
           after the valid ones, SciTLDR dev examples after the ROUGE ones; ``--tune-blocks`` blocks each), never
           on the reported sets: every pair of TUNE_WEIGHTS is merged and scored, the pair keeping the most of
           the task that keeps less wins, and becomes OUT/merges/tuned (scored by eval like the others)
  eval     ``hybridformer evaluate --metric ppl --context BLOCK --json`` of base, parents, merges on both tasks
  rouge    greedy ``hybridformer generate`` of the TLDR for the ROUGE prompts (first sentence of the continuation)
           and ROUGE-1/2/L against the author TLDR (each example's first target)
  overlap  cosine between the two task vectors (fine-tune minus base, or the adapter's ΔW; all tensors together)
  report   the markdown table (loss in nats/token, gain kept = (base - model) / (base - own fine-tune))

Run (one thread, the other core is busy):
  OMP_NUM_THREADS=1 PYTHONPATH=src nice -n 19 python benchmarks/fusion_smollm2.py all --out /work/runs/fusion
  OMP_NUM_THREADS=1 PYTHONPATH=src nice -n 19 python benchmarks/fusion_smollm2.py all --lora --out runs/fusion-lora \
    --merges linear,ta-1.0,ties-d0.2,dare-d0.5,ta-0.8,linear-0.4 --rouge-models ft-scitldr,linear,ties-d0.2
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch

GGUF = Path("../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
DATA = Path("../shared/data")
TASKS = ("shakespeare", "scitldr")
# merge name -> hybridformer merge options (the two fine-tunes in TASKS order; --base OUT/base where needed)
MERGES: dict[str, list[str]] = {  # the four methods first, then a grid (made and evaluated in this order)
    "linear": ["--method", "linear", "--weights", "0.5,0.5"],
    "ta-1.0": ["--method", "task_arithmetic", "--weights", "1.0,1.0", "--base"],
    "ties-d0.2": ["--method", "ties", "--density", "0.2", "--weights", "1.0,1.0", "--base"],
    "dare-d0.5": ["--method", "dare", "--density", "0.5", "--weights", "1.0,1.0", "--base"],
    "ta-0.8": ["--method", "task_arithmetic", "--weights", "0.8,0.8", "--base"],  # (ta-0.5 is `linear` exactly)
    "ties-d0.5": ["--method", "ties", "--density", "0.5", "--weights", "1.0,1.0", "--base"],
    "dare-ties-d0.5": ["--method", "dare", "--combine", "ties", "--density", "0.5", "--weights", "1.0,1.0", "--base"],
    "linear-0.4": ["--method", "linear", "--weights", "0.4,0.6"],  # more of SciTLDR (the adapters' weaker side)
}
TUNE_WEIGHTS = (0.4, 0.5, 0.6, 0.7)  # each task's λ in base + λ_A·ΔA + λ_B·ΔB, searched by the tune stage


# ----------------------------------------------------------------------------- helpers


def _cli(args: list[str], log: Path | None = None) -> tuple[str, float, float]:
    """Run ``hybridformer ARGS``; return stdout, wall seconds and CPU seconds (children's user + sys)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    print("$ hybridformer " + " ".join(args), flush=True)
    done = subprocess.run(["hybridformer", *args], capture_output=True, text=True, env=os.environ.copy())
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    if log is not None:
        log.write_text(done.stdout + "\n--- stderr ---\n" + done.stderr)
    if done.returncode != 0:
        sys.exit(f"hybridformer {args[0]} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout, wall, cpu


def _results(out: Path) -> dict:
    path = out / "results.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _save(out: Path, results: dict) -> None:
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    tmp.replace(out / "results.json")


def _tokenizer(out: Path):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(out / "base" / "tokenizer.json"))


def _cut_to_blocks(lines: list[str], tokenizer, tokens: int) -> list[str]:
    """The shortest prefix of ``lines`` whose joined text holds at least ``tokens`` + 1 tokens."""
    kept: list[str] = []
    count = 0
    for line in lines:
        kept.append(line)
        count += len(tokenizer.encode(line + "\n", add_special_tokens=False).ids)
        if count > tokens:
            return kept
    raise SystemExit(f"only {count} tokens of validation text; {tokens + 1} needed")


def _scitldr(split: str) -> list[dict]:
    with gzip.open(DATA / "scitldr" / f"SciTLDR-A_{split}.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _flat(text: str) -> str:
    return " ".join(text.split())


# ----------------------------------------------------------------------------- stages


def stage_data(out: Path, args: argparse.Namespace) -> None:
    data = out / "data"
    if (data / "done").exists():
        return
    data.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer(out)
    want = args.valid_blocks * args.block
    text = (DATA / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    split = text.rfind("\n", 0, int(len(text) * 0.9)) + 1
    (data / "shakespeare-train.txt").write_text(text[:split])
    valid = _cut_to_blocks(text[split:].splitlines(), tokenizer, want)
    (data / "shakespeare-valid.txt").write_text("\n".join(valid) + "\n")
    monitor = _cut_to_blocks(valid, tokenizer, 2 * args.block)  # the trainer's own (cheap) validation
    (data / "shakespeare-monitor.txt").write_text("\n".join(monitor) + "\n")

    def line(example: dict) -> str:
        return f"{_flat(' '.join(example['source']))} TL;DR: {_flat(example['target'][0])}"

    (data / "scitldr-train.txt").write_text("\n".join(line(e) for e in _scitldr("train")) + "\n")
    dev = _scitldr("dev")
    valid = _cut_to_blocks([line(e) for e in dev], tokenizer, want)
    (data / "scitldr-valid.txt").write_text("\n".join(valid) + "\n")
    monitor = _cut_to_blocks(valid, tokenizer, 2 * args.block)
    (data / "scitldr-monitor.txt").write_text("\n".join(monitor) + "\n")
    rouge = dev[len(valid): len(valid) + args.rouge_n]
    (data / "scitldr-rouge.src").write_text("\n".join(f"{_flat(' '.join(e['source']))} TL;DR:" for e in rouge) + "\n")
    (data / "scitldr-rouge.json").write_text(json.dumps([[_flat(t) for t in e["target"]] for e in rouge]))
    (data / "done").write_text("")


def stage_convert(out: Path, args: argparse.Namespace) -> None:
    if (out / "base" / "model.safetensors").exists():
        return
    _, wall, cpu = _cli(["convert", str(GGUF), "--out", str(out / "base")])
    results = _results(out)
    results["convert"] = {"wall_s": wall, "cpu_s": cpu}
    _save(out, results)


def _config(out: Path, task: str, args: argparse.Namespace) -> Path:
    model = json.loads((out / "base" / "config.json").read_text())
    data = out / "data"
    steps = args.steps
    config = {
        "model": model,
        "data": {"train_file": str(data / f"{task}-train.txt"), "valid_file": str(data / f"{task}-monitor.txt"),
                 "tokenizer": str(out / "base" / "tokenizer.json"), "block_size": args.block,
                 "max_tokens": args.block * args.batch},
        "train": {"init_from": str(out / "base"), "max_steps": steps, "lr": args.lr, "min_lr": 0.0,
                  "schedule": "wsd", "warmup_steps": max(1, steps // 12), "decay_fraction": 0.3,
                  "decay_shape": "linear", "label_smoothing": 0.0, "weight_decay": 0.0, "clip_norm": 1.0,
                  "precision": args.precision, "eval_every": steps, "save_every": steps, "keep_last": 1,
                  "log_every": 1, "seed": 0},
    }
    if args.lora:
        config["train"]["lora"] = {"rank": 16}  # all 7 projections, alpha 32 (the defaults)
    path = out / f"{task}.json"
    path.write_text(json.dumps(config, indent=1))
    return path


def stage_train(out: Path, args: argparse.Namespace) -> None:
    for task in TASKS:
        run = out / f"ft-{task}"
        if (run / "done").exists():
            continue
        config = _config(out, task, args)
        _, wall, cpu = _cli(["train", str(config), "--out", str(run), "--no-progress"], log=out / f"ft-{task}.log")
        results = _results(out)
        results.setdefault("train", {})[task] = {"wall_s": wall, "cpu_s": cpu, "steps": args.steps,
                                                 "block": args.block, "batch": args.batch, "lr": args.lr,
                                                 "lora": args.lora}
        _save(out, results)
        (run / "done").write_text("")


def _best(out: Path, task: str) -> Path:
    checkpoints = out / f"ft-{task}" / "checkpoints"
    last = checkpoints / "last"
    if last.exists():
        return last
    steps = sorted(checkpoints.glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
    if not steps:
        raise SystemExit(f"no checkpoint in {checkpoints}: run the train stage first")
    return steps[-1]


def models(out: Path) -> dict[str, Path]:
    found = {"base": out / "base"}
    found.update({f"ft-{t}": _best(out, t) for t in TASKS if (out / f"ft-{t}" / "done").exists()})
    found.update({name: out / "merges" / name for name in [*MERGES, "tuned"] if (out / "merges" / name).exists()})
    return found


def stage_merge(out: Path, args: argparse.Namespace) -> None:
    parents = [str(_best(out, t)) for t in TASKS]
    for name, options in MERGES.items():
        target = out / "merges" / name
        if target.exists() or name not in args.merges:
            continue
        options = [*options, str(out / "base")] if options[-1] == "--base" else options
        adapters = [arg for parent in parents for arg in ("--adapter", parent)] if args.lora else parents
        _, wall, cpu = _cli(["merge", *options, *adapters, "--out", str(target)])
        results = _results(out)
        results.setdefault("merge", {})[name] = {"wall_s": wall, "cpu_s": cpu, "command": options}
        _save(out, results)


def _score(path: Path, text: Path, args: argparse.Namespace) -> dict:
    stdout, wall, cpu = _cli(["evaluate", str(path), "--ref", str(text), "--metric", "ppl", "--context",
                              str(args.block), "--json"])
    score = json.loads(stdout)
    score["loss"] = score["details"]["bits_per_token"] * math.log(2)  # nats per token
    score.update(wall_s=wall, cpu_s=cpu)
    return score


def stage_eval(out: Path, args: argparse.Namespace) -> None:
    for name, path in models(out).items():
        for task in TASKS:
            results = _results(out)
            if name in results.get("eval", {}).get(task, {}):
                continue
            results.setdefault("eval", {}).setdefault(task, {})[name] = _score(
                path, out / "data" / f"{task}-valid.txt", args)
            _save(out, results)


def _tune_texts(out: Path, args: argparse.Namespace) -> dict[str, Path]:
    """Each task's tuning text, disjoint from its reported held-out text and the ROUGE examples."""
    data = out / "data"
    paths = {task: data / f"{task}-tune.txt" for task in TASKS}
    if all(path.exists() for path in paths.values()):
        return paths
    tokenizer, want = _tokenizer(out), args.tune_blocks * args.block
    text = (DATA / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    held_out = text[text.rfind("\n", 0, int(len(text) * 0.9)) + 1:].splitlines()
    used = len((data / "shakespeare-valid.txt").read_text().splitlines())
    paths["shakespeare"].write_text("\n".join(_cut_to_blocks(held_out[used:], tokenizer, want)) + "\n")
    used = len((data / "scitldr-valid.txt").read_text().splitlines()) + args.rouge_n
    lines = [f"{_flat(' '.join(e['source']))} TL;DR: {_flat(e['target'][0])}" for e in _scitldr("dev")[used:]]
    paths["scitldr"].write_text("\n".join(_cut_to_blocks(lines, tokenizer, want)) + "\n")
    return paths


def _task_arithmetic(out: Path, weights: tuple[float, float], sources: list[str], target: Path) -> None:
    _cli(["merge", "--method", "task_arithmetic", "--weights", ",".join(map(str, weights)), "--base",
          str(out / "base"), *sources, "--out", str(target)])


def stage_tune(out: Path, args: argparse.Namespace) -> None:
    texts = _tune_texts(out, args)
    sources = [str(_best(out, t)) for t in TASKS]
    sources = [arg for parent in sources for arg in ("--adapter", parent)] if args.lora else sources
    candidates = {f"ta-{a}-{b}": (a, b) for a in TUNE_WEIGHTS for b in TUNE_WEIGHTS}

    def record(name: str, path: Path) -> None:
        results = _results(out)
        results.setdefault("tune", {}).setdefault("loss", {})[name] = {
            task: _score(path, texts[task], args)["loss"] for task in TASKS}
        _save(out, results)

    scored = _results(out).get("tune", {}).get("loss", {})
    for name in ("base", *[f"ft-{t}" for t in TASKS]):
        if name not in scored:
            record(name, models(out)[name])
    for name, weights in candidates.items():
        if name not in scored:  # each candidate is merged into a temporary folder, scored, and dropped
            with tempfile.TemporaryDirectory(prefix="tune-", dir=out) as scratch:
                _task_arithmetic(out, weights, sources, Path(scratch) / name)
                record(name, Path(scratch) / name)
    results = _results(out)
    losses = results["tune"]["loss"]

    def kept(name: str, task: str) -> float:
        base, own = losses["base"][task], losses[f"ft-{task}"][task]
        return (base - losses[name][task]) / (base - own)

    chosen = max(candidates, key=lambda name: min(kept(name, task) for task in TASKS))
    results["tune"]["chosen"] = {"name": chosen, "weights": candidates[chosen],
                                 "kept_on_tuning_text": {task: kept(chosen, task) for task in TASKS}}
    _save(out, results)
    if not (out / "merges" / "tuned").exists():
        _task_arithmetic(out, candidates[chosen], sources, out / "merges" / "tuned")


def stage_rouge(out: Path, args: argparse.Namespace) -> None:
    from hybridformer.metrics import rouge, split_sentences

    references = json.loads((out / "data" / "scitldr-rouge.json").read_text())
    for name, path in models(out).items():
        results = _results(out)
        if name in results.get("rouge", {}) or name not in args.rouge_models:
            continue
        stdout, wall, cpu = _cli(["generate", str(path), "--input", str(out / "data" / "scitldr-rouge.src"),
                                  "--beam", "1", "--max-len-b", "48", "--no-progress"])
        # the continuation runs on past the TLDR (generate joins lines with spaces): keep its first sentence
        hypotheses = [(split_sentences(line.strip()) or [""])[0] for line in stdout.splitlines()]
        score = rouge(hypotheses, [r[0] for r in references])
        results.setdefault("rouge", {})[name] = {"score": score.score, "detail": str(score), "wall_s": wall,
                                                 "cpu_s": cpu, "examples": len(references),
                                                 "first_hypotheses": hypotheses[:3]}
        _save(out, results)


def _task_vectors(out: Path, args: argparse.Namespace) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Both tasks' updates, tensor by tensor: fine-tune − base, or each adapter's full ΔW."""
    if args.lora:
        from hybridformer import load_checkpoint
        from hybridformer.lora import deltas_for, read_adapter

        base = load_checkpoint(out / "base")
        deltas = [deltas_for(base, read_adapter(_best(out, t))) for t in TASKS]
        zero = torch.zeros(())
        for name in deltas[0].keys() | deltas[1].keys():
            yield deltas[0].get(name, zero).double(), deltas[1].get(name, zero).double()
        return
    from safetensors import safe_open

    files = [safe_open(str(p / "model.safetensors"), "pt") for p in (out / "base", *[_best(out, t) for t in TASKS])]
    for name in files[0].keys():
        base = files[0].get_tensor(name).double()
        yield tuple(f.get_tensor(name).double() - base for f in files[1:])


def stage_overlap(out: Path, args: argparse.Namespace) -> None:
    """Cosine between the two task vectors (all tensors flattened together) and their norms."""
    dot = norm_a = norm_b = 0.0
    for delta_a, delta_b in _task_vectors(out, args):
        dot += float((delta_a * delta_b).sum())
        norm_a += float(delta_a.square().sum())
        norm_b += float(delta_b.square().sum())
    results = _results(out)
    results["overlap"] = {"cosine": dot / (norm_a * norm_b) ** 0.5, "norm_a": norm_a**0.5, "norm_b": norm_b**0.5}
    _save(out, results)


def report(out: Path) -> str:
    results = _results(out)
    scores = results.get("eval", {})

    def loss(task: str, name: str) -> float | None:
        entry = scores.get(task, {}).get(name)
        return entry["loss"] if entry else None

    with_rouge = bool(results.get("rouge"))
    lines = ["| model | Shakespeare loss | gain kept | SciTLDR loss | gain kept |"
             + " ROUGE-L (SciTLDR) |" * with_rouge,
             "|---|---|---|---|---|" + "---|" * with_rouge]
    for name in models(out):
        cells = [name]
        for task in TASKS:
            value, base, own = loss(task, name), loss(task, "base"), loss(task, f"ft-{task}")
            cells.append("—" if value is None else f"{value:.4f}")
            kept = None if None in (value, base, own) or base == own else (base - value) / (base - own)
            cells.append("—" if kept is None else f"{100 * kept:.0f}%")
        entry = results.get("rouge", {}).get(name)
        if with_rouge:
            cells.append("—" if entry is None else f"{entry['score']:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


STAGES = {"data": stage_data, "convert": stage_convert, "train": stage_train, "merge": stage_merge,
          "tune": stage_tune, "eval": stage_eval, "rouge": stage_rouge, "overlap": stage_overlap}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=[*STAGES, "report", "all"])
    parser.add_argument("--out", type=Path, default=Path("runs/fusion-smollm2"))
    parser.add_argument("--block", type=int, default=256, help="tokens per training block and per scored block")
    parser.add_argument("--batch", type=int, default=2, help="blocks per training step")
    parser.add_argument("--steps", type=int, default=48, help="fine-tuning steps per task")
    parser.add_argument("--lr", type=float, help="peak learning rate (default 2e-4; 1e-3 with --lora, as the "
                        "SciTLDR LoRA recipe)")
    parser.add_argument("--lora", action="store_true", help="train LoRA adapters (rank 16, all linear layers) and "
                        "merge those (use a fresh --out)")
    parser.add_argument("--precision", default="bf16", choices=["fp32", "bf16", "auto"])
    parser.add_argument("--valid-blocks", type=int, default=16, help="held-out blocks per task")
    parser.add_argument("--rouge-n", type=int, default=16, help="SciTLDR dev examples for ROUGE")
    parser.add_argument("--tune-blocks", type=int, default=8, help="blocks per task of the tune stage's own text")
    parser.add_argument("--merges", default="linear,ta-1.0,ties-d0.2,dare-d0.5,ta-0.8", type=lambda s: s.split(","),
                        help="merges to make (comma-separated names of MERGES; the default is what RESULTS reports)")
    parser.add_argument("--rouge-models", default="base,ft-scitldr,linear",
                        type=lambda s: s.split(","), help="models to score by ROUGE (comma-separated names)")
    args = parser.parse_args()
    args.lr = args.lr or (1e-3 if args.lora else 2e-4)
    args.out.mkdir(parents=True, exist_ok=True)
    order = ["convert", "data", "train", "merge", "tune", "eval", "rouge"]
    for stage in order if args.stage == "all" else [args.stage] if args.stage != "report" else []:
        STAGES[stage](args.out, args)
    print(report(args.out))


if __name__ == "__main__":
    main()
