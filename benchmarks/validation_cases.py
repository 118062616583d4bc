"""Issue 17, part B: run every bad-input case against the CLI and classify the outcome.

    python benchmarks/validation_cases.py [--src SRC_DIR] [--out cases.json]

``--src`` is the ``src/`` directory whose code runs (default: this checkout's); e.g. the code
before the fixes: ``git archive 518bad8 src | tar -x -C /tmp/before`` then ``--src /tmp/before/src``.
Each case runs the command line's entry point, ``hybridformer.cli.main``, with its arguments, in this
one process (so 40 cases do not pay 40 interpreter and torch start-ups on a loaded machine): the
exit status is what ``main`` exits or returns, an exception escaping it is the traceback a user
would see. The fixture checkpoint is trained once, by the code under test. Outcome classes:

- ``clear``: exit 2, one line on stderr, no traceback (what the README promises);
- ``traceback``: a Python traceback reached the user;
- ``silent``: exit 0 although the input is wrong (a silently wrong result);
- ``refused-valid``: a valid input (a shipped recipe) was refused;
- ``accepted``: a valid input was accepted (the right outcome for it);
- ``huge-line``: exit 2 and one line, but a line of more than 10 kB (the whole value repeated);
- ``other``: anything else (exit status and first line reported).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = {"d_model": 16, "heads": 2, "ffn_dim": 32, "dropout": 0.0, "encoder": {"layers": 1},
              "decoder": {"layers": 1}}
TINY_RECIPE = {"model": TINY_MODEL, "data": {"builtin": "reverse", "builtin_train": 64, "builtin_valid": 8},
               "train": {"max_steps": 2, "eval_every": 2, "log_every": 1, "warmup_steps": 0}}
Case = tuple[str, Callable[[Path], list[str]], bool]  # name, argv maker (in a scratch dir), input is valid


def run(argv: list[str], cwd: Path) -> tuple[int, str, float]:
    """``hybridformer ARGV`` through ``cli.main`` in this process: (exit status, stderr, seconds)."""
    from hybridformer.cli import main

    stderr, stdout = io.StringIO(), io.StringIO()
    old_argv, old_cwd = sys.argv, os.getcwd()
    sys.argv = ["hybridformer", *argv]
    os.chdir(cwd)
    start = time.perf_counter()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
            status = main() or 0
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException as exc:  # noqa: BLE001 - what escapes main() is a traceback for the user
        stderr.write(f"Traceback (most recent call last):\n{type(exc).__name__}: {str(exc)[:200]}\n")
        status = 1
    finally:
        sys.argv = old_argv
        os.chdir(old_cwd)
    return status, stderr.getvalue(), time.perf_counter() - start


def classify(status: int, stderr: str, valid: bool) -> str:
    if "Traceback" in stderr:
        return "traceback"
    if valid:
        return "accepted" if status == 0 else "refused-valid"
    if status == 0:
        return "silent"
    if status == 2 and len(stderr.strip().splitlines()) == 1:
        return "clear" if len(stderr) < 10_000 else "huge-line"
    return "other"


# ----------------------------------------------------------------------------- fixtures


def recipe(tmp: Path, name: str = "recipe.yaml", **sections: dict) -> str:
    data = json.loads(json.dumps(TINY_RECIPE))
    for key, value in sections.items():
        data[key] = {**data[key], **value}
    (tmp / name).write_text(yaml.safe_dump(data))
    return str(tmp / name)


def model_override(*sets: str) -> Callable[[Path], list[str]]:
    return lambda tmp: ["config", "check", *[arg for s in sets for arg in ("--set", s)]]


def train_with(**sections: dict) -> Callable[[Path], list[str]]:
    return lambda tmp: ["train", recipe(tmp, **sections), "--out", str(tmp / "run"), "--no-progress"]


FIXTURE = Path(tempfile.mkdtemp(prefix="validation-cases-"))


def checkpoint(tmp: Path, edit: Callable[[Path], None] | None = None) -> Path:
    """A copy of a tiny trained seq2seq checkpoint (trained once, by the code under test), then ``edit(path)``."""
    base = FIXTURE / "teacher" / "checkpoints" / "best"
    if not base.exists():
        subprocess.run([sys.executable, "-c", "import sys; from hybridformer.cli import main; sys.exit(main())",
                        "train", recipe(FIXTURE, "teacher.yaml"), "--out", str(FIXTURE / "teacher"), "--no-progress"],
                       cwd=FIXTURE, env=dict(os.environ), check=True,  # PYTHONPATH: the code under test
                       capture_output=True)
    path = tmp / "ckpt"
    if not path.exists():
        shutil.copytree(base, path)
    if edit is not None:
        edit(path)
    (tmp / "in.txt").write_text("1 2 3\n")
    return path


def edit_config(**changes) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        config = json.loads((path / "config.json").read_text())
        for key, value in changes.items():
            node = config
            *parents, last = key.split(".")
            for part in parents:
                node = node[part]
            node[last] = value
        (path / "config.json").write_text(json.dumps(config))
    return edit


def edit_weights(change: Callable[[dict], None], keep_metadata: bool = True) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        from safetensors import safe_open
        from safetensors.torch import load_file, save_file

        with safe_open(str(path / "model.safetensors"), "pt") as handle:
            metadata = handle.metadata()
        tensors = load_file(str(path / "model.safetensors"))
        change(tensors)
        save_file(tensors, str(path / "model.safetensors"), metadata=metadata if keep_metadata else {"format": "pt"})
    return edit


def both(*edits: Callable[[Path], None]) -> Callable[[Path], None]:
    return lambda path: [edit(path) for edit in edits] and None


def generate_on(edit: Callable[[Path], None]) -> Callable[[Path], list[str]]:
    return lambda tmp: ["generate", str(checkpoint(tmp, edit)), "--input", str(tmp / "in.txt")]


def corrupt_gz(tmp: Path) -> Path:
    rng = random.Random(0)
    data = bytearray(gzip.compress("".join(f"{rng.random()} x y\n" for _ in range(2000)).encode()))
    for i in range(30, 60):
        data[i] ^= 0xFF
    (tmp / "bad.gz").write_bytes(bytes(data))
    (tmp / "good.txt").write_text("a b c\n" * 100)
    return tmp / "bad.gz"


def truncated_tar(tmp: Path) -> Path:
    rng = random.Random(0)
    with tarfile.open(tmp / "docs.tar.gz", "w:gz") as archive:
        for label in ("neg", "pos"):
            for i in range(20):
                text = "".join(rng.choice("abcdefgh ") for _ in range(2000)).encode()
                info = tarfile.TarInfo(f"train/{label}/{i}.txt")
                info.size = len(text)
                archive.addfile(info, io.BytesIO(text))
    data = (tmp / "docs.tar.gz").read_bytes()
    (tmp / "docs.tar.gz").write_bytes(data[: len(data) * 2 // 3])
    return tmp / "docs.tar.gz"


def billion_laughs(tmp: Path) -> list[str]:
    """9**6 "lol"s through anchors (the issue's 9**9 made the old code raise MemoryError after minutes)."""
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]" for p, n in zip("abcde", "bcdef", strict=True)]
    (tmp / "lol.yaml").write_text("\n".join(lines) + "\nheads: *f\n")
    return ["config", "check", str(tmp / "lol.yaml")]


def write(name: str, content: bytes) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        (tmp / name).write_bytes(content)
        return ["config", "check", str(tmp / name)]
    return make


def check_file(path: Path) -> Callable[[Path], list[str]]:
    return lambda tmp: ["config", "check", str(path)]


def bench(*args: str) -> Callable[[Path], list[str]]:
    return lambda tmp: ["bench", "attention", "-m", "full", "-l", "16", "--repeats", "1", *args, "--out",
                        str(tmp / "b")]


def prune(flag: str) -> Callable[[Path], list[str]]:
    return lambda tmp: ["prune", str(checkpoint(tmp)), "--heads", "0.5", "--data", str(tmp / "in.txt"), "--data",
                        str(tmp / "in.txt"), flag, "0", "--out", str(tmp / "pruned")]


def distill_nan(tmp: Path) -> list[str]:
    teacher = checkpoint(tmp)
    return ["distill", "--teacher", str(teacher), "--config", recipe(tmp, "student.yaml"), "--out",
            str(tmp / "student"), "--temperature", "nan", "--no-progress"]


def int64(tensors: dict) -> None:
    tensors["output.weight"] = tensors["output.weight"].mul(100).round().long()


def nan(tensors: dict) -> None:
    tensors["encoder.final_norm.weight"][0] = float("nan")


CASES: list[Case] = [
    ("config check heads=0", model_override("heads=0"), False),
    ("config check kv_heads=0", model_override("kv_heads=0"), False),
    ("config check attention window=abc", model_override("encoder.attention.name=sliding_window",
                                                          "encoder.attention.window=abc"), False),
    ("config check attention window=0", model_override("encoder.attention.name=sliding_window",
                                                        "encoder.attention.window=0"), False),
    ("config check attention window=-5", model_override("encoder.attention.name=sliding_window",
                                                         "encoder.attention.window=-5"), False),
    ("config check t5_buckets=0", model_override("position=t5", "t5_buckets=0"), False),
    ("config check rope_base=0", model_override("position=rope", "rope_base=0"), False),
    ("config check binary YAML", write("binary.yaml", bytes(range(256)) * 4), False),
    ("config check non-UTF-8 YAML", write("latin1.yaml", "heads: 4  # caf\xe9\n".encode("latin-1")), False),
    ("config check billion-laughs anchor", billion_laughs, False),
    *[(f"config check {p.name}", check_file(p), True) for p in sorted((ROOT / "configs").glob("*.yaml"))],
    ("train betas=[2,-1]", train_with(train={"betas": [2, -1]}), False),
    ("train seed=2**70", train_with(train={"seed": 2**70}), False),
    ("train device=tpu", train_with(train={"device": "tpu"}), False),
    ("train lr=inf", train_with(train={"lr": float("inf")}), False),
    ("train rope_base=0", train_with(model={"position": "rope", "rope_base": 0}), False),
    ("train kv_heads=0", train_with(model={"kv_heads": 0}), False),
    ("train data.vocab_size=1 (builtin task)", train_with(data={"vocab_size": 1}), False),
    ("distill --temperature nan", distill_nan, False),
    ("generate: int64 weight", generate_on(edit_weights(int64)), False),
    ("generate: NaN weight", generate_on(edit_weights(nan)), False),
    ("generate: config.json position edited", generate_on(edit_config(position="rope")), False),
    ("generate: config.json activation edited", generate_on(edit_config(activation="gelu")), False),
    ("generate: config.json vocab 2**40 (no fingerprint)",
     generate_on(both(edit_weights(lambda t: None, keep_metadata=False), edit_config(vocab_size=2**40))), False),
    ("generate: config.json 3000 layers (no fingerprint)",
     generate_on(both(edit_weights(lambda t: None, keep_metadata=False), edit_config(**{"encoder.layers": 3000}))),
     False),
    ("generate: corrupt meta.json", generate_on(lambda p: (p / "meta.json").write_text('{"step": ')), False),
    ("generate: checkpoint without fingerprint (old)", generate_on(edit_weights(lambda t: None, False)), True),
    ("tokenizer train corrupt .gz", lambda tmp: ["tokenizer", "train", str(corrupt_gz(tmp)), "--vocab-size", "300",
                                                  "--out", str(tmp / "tok.json")], False),
    ("train corrupt .gz", lambda tmp: ["train", recipe(tmp, data={"builtin": None, "train_src": str(corrupt_gz(tmp)),
                                                                  "train_tgt": str(tmp / "good.txt"),
                                                                  "valid_src": str(tmp / "good.txt"),
                                                                  "valid_tgt": str(tmp / "good.txt")}),
                                       "--out", str(tmp / "run"), "--no-progress"], False),
    ("train classifier on truncated .tar.gz",
     lambda tmp: ["train", recipe(tmp, model={"arch": "encoder_classifier"},
                                  data={"builtin": None, "format": "folders", "train_file": str(truncated_tar(tmp)),
                                        "tokenizer_kind": "byte", "max_src_len": 64}),
                  "--out", str(tmp / "run"), "--no-progress"], False),
    ("bench attention -l 0", lambda tmp: bench()(tmp)[:4] + ["-l", "0", "--out", str(tmp / "b")], False),
    ("bench attention -l abc", lambda tmp: bench()(tmp)[:4] + ["-l", "abc", "--out", str(tmp / "b")], False),
    ("bench attention --heads 0", bench("--heads", "0"), False),
    ("bench attention --batch 0", bench("--batch", "0"), False),
    ("bench attention --bias foo", bench("--bias", "foo"), False),
    ("prune --batch-size 0", prune("--batch-size"), False),
    ("prune --max-examples 0", prune("--max-examples"), False),
]


def table(before: list[dict], after: list[dict]) -> str:
    """Markdown: one row per case, the outcome before and after, and what the user sees now."""
    lines = ["| case | before | after | what the user sees now |", "|---|---|---|---|"]
    for old, new in zip(before, after, strict=True):
        shown = new["last_line"].replace("|", "\\|")
        shown = shown.split("ckpt/")[-1] if "ckpt/" in shown else shown
        lines.append(f"| {new['case']} | {old['outcome']} | {new['outcome']} | {shown[:90]} |")
    counts = {side: {} for side in ("before", "after")}
    for side, rows in (("before", before), ("after", after)):
        for row in rows:
            counts[side][row["outcome"]] = counts[side].get(row["outcome"], 0) + 1
    totals = "; ".join(f"{side}: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())) for side, c in counts.items())
    return "\n".join(lines) + f"\n\n{len(after)} cases — {totals}."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=ROOT / "src")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--table", type=Path, nargs=2, metavar=("BEFORE", "AFTER"),
                        help="print the markdown before/after table of two --out files and stop")
    args = parser.parse_args()
    if args.table:
        print(table(*(json.loads(path.read_text()) for path in args.table)))
        return
    sys.path.insert(0, str(args.src.resolve()))
    os.environ["PYTHONPATH"] = str(args.src.resolve())  # subprocesses the commands start (quickstart workers)
    rows = []
    for name, make, valid in CASES:
        with tempfile.TemporaryDirectory() as scratch:
            tmp = Path(scratch)
            status, stderr, seconds = run(make(tmp), tmp)
        outcome = classify(status, stderr, valid)
        last = (stderr.strip().splitlines() or [""])[-1][:100]
        rows.append({"case": name, "outcome": outcome, "status": status, "stderr_bytes": len(stderr),
                     "seconds": round(seconds, 1), "last_line": last})
        print(f"{outcome:<14} {status:>3} {seconds:6.1f}s {len(stderr):>8}B  {name}: {last}", flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
