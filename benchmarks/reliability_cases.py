"""Issue 17, part A: run the data-loss / exit-status cases against the real ``hybridformer`` console script
and classify each outcome. Prints a markdown table (case | exit | outcome).

    PYTHONPATH=src python benchmarks/reliability_cases.py            # this checkout
    PYTHONPATH=/tmp/old/src python benchmarks/reliability_cases.py   # an older one (git archive REV src)
    PYTHONPATH=src python benchmarks/reliability_cases.py generate   # only the cases whose name has "generate"

Outcome classes: ``clear error`` (exit 2, one ``error:`` line last on stderr, no traceback), ``ok`` (the
intended success), ``traceback``, ``data lost`` (something the user did not ask to replace is gone or was
written through), ``wrong status`` (no traceback, but not the promised exit status or behaviour), ``hang``
(still running at the time limit).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

TINY = ["data.builtin=numbers", "data.builtin_train=200", "data.builtin_valid=30", "data.max_tokens=600",
        "model.d_model=32", "model.heads=2", "model.ffn_dim=64", "model.encoder.layers=1", "model.decoder.layers=1",
        "train.warmup_steps=4", "train.lr=0.003", "train.log_every=1", "train.eval_every=4", "model.max_positions=64"]
EXE = shutil.which("hybridformer") or "hybridformer"


def sets(*items: str) -> list[str]:
    return [arg for item in [*TINY, *items] for arg in ("--set", item)]


def cli(*args, timeout: float = 400, **kwargs) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, timeout=timeout, **kwargs)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(args, -1, "", "TIMEOUT")


def clear_error(result: subprocess.CompletedProcess) -> bool:
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    return result.returncode == 2 and len(errors) == 1 and lines[-1] == errors[0]


def classify(result, *, expect: str = "error", intact: bool = True, ok: bool = True) -> str:
    if result.returncode == -1:
        return "hang"
    if "Traceback" in result.stderr:
        return "traceback"
    if not intact:
        return "data lost"
    if expect == "error":
        return "clear error" if clear_error(result) else "wrong status"
    return "ok" if ok else "wrong status"


def tree(path: Path) -> list[tuple[str, bytes]]:
    """Every file under ``path`` with its content (a replaced file counts as lost, not only a missing one)."""
    return sorted((str(p.relative_to(path)), p.read_bytes() if p.is_file() else b"")
                  for p in path.rglob("*") if p.name != "run.lock")


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="hf-cases-"))
    os.chdir(root)
    Path("exp.yaml").write_text("{}\n")
    made = cli("train", "exp.yaml", "--out", "run", "--no-progress",
               *sets("train.max_steps=6", "train.save_every=2", "train.keep_last=3"))
    assert made.returncode == 0, made.stderr
    ckpt = root / "run" / "checkpoints" / "best"
    shutil.copytree(ckpt, "ck")
    Path("in.txt").write_text("1 2 3\n4 5 6\n")
    rows: list[tuple[str, str, str]] = []

    def case(name: str, run: Callable[[], tuple[subprocess.CompletedProcess, str]]) -> None:
        if sys.argv[1:] and not any(word in name for word in sys.argv[1:]):
            return  # only the cases named on the command line
        result, outcome = run()
        rows.append((name, str(result.returncode), outcome))
        print(f"| {name} | {result.returncode} | {outcome} |", flush=True)

    def guarded(args: list, target: Path, *, expect: str = "error") -> tuple[subprocess.CompletedProcess, str]:
        before = tree(target) if target.is_dir() else target.read_bytes() if target.exists() else None
        result = cli(*args)
        after = tree(target) if target.is_dir() else target.read_bytes() if target.exists() else None
        return result, classify(result, expect=expect, intact=before == after)

    run = root / "run"
    Path("precious").mkdir()
    Path("precious/thesis.tex").write_text("years of work")
    Path("some_file.txt").write_text("keep me")
    shutil.copytree(run, "run-a")  # the data-loss cases each get their own copy: the old code destroys it
    case("`average --last 3 RUN --out RUN`",
         lambda: guarded(["average", "--last", "3", root / "run-a", "--out", root / "run-a"], root / "run-a"))
    case("`average CK --out precious/` (unrelated files)",
         lambda: guarded(["average", "ck", "--out", "precious"], Path("precious")))
    case("`average CK --out precious/ --overwrite`",
         lambda: guarded(["average", "ck", "--out", "precious", "--overwrite"], Path("precious")))
    case("`average CK --out some_file.txt`",
         lambda: guarded(["average", "ck", "--out", "some_file.txt"], Path("some_file.txt")))
    shutil.copytree("ck", "ck-q")
    case("`quantize X --out X`", lambda: guarded(["quantize", "ck-q", "--out", "ck-q"], Path("ck-q")))
    step = sorted((Path(shutil.copytree(run, "run-b")) / "checkpoints").glob("step-*"))[-1]
    case("`average CK --out RUN/checkpoints/step-N --overwrite`",
         lambda: guarded(["average", "ck", "--out", step, "--overwrite"], step))
    Path("text.txt").write_text("the cat sat on the mat\n" * 20)
    case("`tokenizer train text.txt --out text.txt --overwrite`",
         lambda: guarded(["tokenizer", "train", "text.txt", "--kind", "char", "--out", "text.txt", "--overwrite"],
                         Path("text.txt")))

    def second_writer() -> tuple[subprocess.CompletedProcess, str]:
        shutil.copytree(run, "run2")
        first = subprocess.Popen([EXE, "train", "exp.yaml", "--out", "run2", "--resume", "--no-progress",
                                  *sets("train.max_steps=400", "train.save_every=2", "train.keep_last=3")],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        log, logged = root / "run2" / "metrics.jsonl", len((root / "run2" / "metrics.jsonl").read_text().splitlines())
        while len(log.read_text().splitlines()) <= logged:  # wait until the first one is training
            assert first.poll() is None, "the first run stopped"
            time.sleep(0.05)
        result = cli("train", "exp.yaml", "--out", "run2", "--resume", "--no-progress",
                     *sets("train.max_steps=400", "train.save_every=2", "train.keep_last=3"), timeout=60)
        first.kill()
        first.wait()
        if result.returncode == -1:  # still training alongside the first: two writers
            return result, "data lost"
        return result, classify(result)

    case("two `train` into one `--out`", second_writer)

    def planted_link() -> tuple[subprocess.CompletedProcess, str]:
        shutil.copytree(run, "run3")
        Path("outside.txt").write_text("precious")
        (root / "run3" / "metrics.jsonl").unlink()
        (root / "run3" / "metrics.jsonl").symlink_to(root / "outside.txt")
        result = cli("train", "exp.yaml", "--out", "run3", "--resume", "--no-progress",
                     *sets("train.max_steps=8", "train.save_every=2", "train.keep_last=3"))
        return result, classify(result, intact=Path("outside.txt").read_text() == "precious")

    case("symlink planted as RUN/metrics.jsonl", planted_link)

    def leftovers() -> tuple[subprocess.CompletedProcess, str]:
        shutil.copytree(run, "run4")
        ckpts = root / "run4" / "checkpoints"
        os.replace(ckpts / "best", ckpts / ".best.old-deadbeef")  # killed between the two renames
        (ckpts / ".step-000008.tmp-cafebabe").mkdir()
        (sorted(ckpts.glob("step-*"))[0] / "model.safetensors").unlink()  # half-deleted by keep_last
        result = cli("train", "exp.yaml", "--out", "run4", "--resume", "--no-progress",
                     *sets("train.max_steps=8", "train.save_every=2", "train.keep_last=3"))
        clean = (ckpts / "best").is_dir() and not [p for p in ckpts.iterdir() if p.name.startswith(".")]
        complete = all((p / "model.safetensors").exists() for p in ckpts.glob("step-*"))
        return result, classify(result, expect="ok", ok=result.returncode == 0, intact=clean and complete)

    case("kill left no `best/`, a `.tmp-*`, a half-deleted step, then `--resume`", leftovers)

    def killed_before_first_checkpoint() -> tuple[subprocess.CompletedProcess, str]:
        args = ["train", "exp.yaml", "--out", "run5", "--no-progress", *sets("train.max_steps=60",
                                                                              "train.eval_every=60")]
        proc = subprocess.Popen([EXE, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not (root / "run5" / "metrics.jsonl").exists() or \
                len((root / "run5" / "metrics.jsonl").read_text().splitlines()) < 3:
            time.sleep(0.05)
        proc.kill()
        proc.wait()
        result = cli(*args, "--resume", timeout=300)
        events = [(e["kind"], e["step"]) for e in map(json.loads, (root / "run5" / "metrics.jsonl").open())]
        return result, classify(result, expect="ok", ok=result.returncode == 0 and len(events) == len(set(events)))

    case("SIGKILL before the first checkpoint, then `--resume`", killed_before_first_checkpoint)

    for name, args in [("unknown command", ["nosuch"]), ("unknown option", ["generate", "ck", "--bogus"]),
                       ("missing `--input`", ["generate", "ck"]),
                       ("`--beam 0`", ["generate", "ck", "--input", "in.txt", "--beam", "0"]),
                       ("`--top-k 1.5`", ["generate", "ck", "--input", "in.txt", "--top-k", "1.5"]),
                       ("`train` without `--out`", ["train", "exp.yaml"])]:
        case(f"usage: {name}", lambda args=args: (lambda r: (r, classify(r)))(cli(*args)))
    case("`hybridformer --version`",
         lambda: (lambda r: (r, classify(r, expect="ok", ok=r.returncode == 0 and "hybridformer" in r.stdout)))(
             cli("--version")))
    case("diverged run (`train.lr=1e30`) exits 3", lambda: (lambda r: (r, classify(
        r, expect="ok", ok=r.returncode == 3)))(cli("train", "exp.yaml", "--out", "run6", "--no-progress",
                                                     *sets("train.lr=1e30", "train.warmup_steps=0",
                                                           "train.max_steps=6", "train.eval_every=100"))))

    def interrupted_train(sig: int, status: int) -> tuple[subprocess.CompletedProcess, str]:
        out = root / f"run-sig{sig}"
        proc = subprocess.Popen([EXE, "train", "exp.yaml", "--out", out, "--no-progress",
                                 *sets("train.max_steps=400", "train.eval_every=1000")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while not (out / "metrics.jsonl").exists() or len((out / "metrics.jsonl").read_text().splitlines()) < 3:
            time.sleep(0.05)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=120)
        result = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
        logged = len((out / "metrics.jsonl").read_text().splitlines())
        saved = sorted((out / "checkpoints").glob("step-*")) if (out / "checkpoints").exists() else []
        kept = bool(saved) and int(saved[-1].name.split("-")[1]) == logged
        return result, classify(result, expect="ok", ok=proc.returncode == status and kept)

    case("Ctrl-C (SIGINT) during `train`: checkpoint at the step, exit 130",
         lambda: interrupted_train(signal.SIGINT, 130))
    case("SIGTERM during `train`: checkpoint at the step, exit 143", lambda: interrupted_train(signal.SIGTERM, 143))

    def interrupted_generate() -> tuple[subprocess.CompletedProcess, str]:
        Path("many.txt").write_text("1 2 3 4 5 6 7\n" * 3000)
        proc = subprocess.Popen([EXE, "generate", "ck", "--input", "many.txt", "--beam", "2", "--batch-tokens",
                                 "16"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.stdout.read(), proc.stderr.read()  # the reader's buffer may hold more lines
        proc.wait(timeout=60)
        written = (1 if first else 0) + len(stdout.splitlines())
        result = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
        said = f"first {written} output line" in stderr
        return result, classify(result, expect="ok", ok=proc.returncode == 130 and said)

    case("Ctrl-C during `generate` of 3,000 lines (says how many were written)", interrupted_generate)

    def bad_state(value: str) -> tuple[subprocess.CompletedProcess, str]:
        import torch

        out = root / f"run-state-{value}"
        shutil.copytree(run, out)
        latest = sorted((out / "checkpoints").glob("step-*"))[-1] / "trainer_state.pt"
        good = torch.load(latest, weights_only=True)
        torch.save({"{}": {}, "list": [1, 2], "step": {**good, "step": "abc"}}[value], latest)
        result = cli("train", "exp.yaml", "--out", out, "--resume", "--no-progress",
                     *sets("train.max_steps=8", "train.save_every=2", "train.keep_last=3"))
        return result, classify(result)

    for value in ("{}", "list", "step"):
        label = {"{}": "`{}`", "list": "a list", "step": "`step='abc'`"}[value]
        case(f"`trainer_state.pt` holding {label}", lambda value=value: bad_state(value))
    for device in ("cuda", "tpu"):
        case(f"`generate --device {device}` (CPU-only machine)", lambda device=device: (
            lambda r: (r, classify(r) if "safetensors" not in r.stderr else "wrong status"))(
            cli("generate", "ck", "--input", "in.txt", "--device", device)))

    def partial_metrics() -> tuple[subprocess.CompletedProcess, str]:
        shutil.copytree(run, "run7")
        with open(root / "run7" / "metrics.jsonl", "a") as log:
            log.write('{"kind": "train", "st')
        result = cli("train", "exp.yaml", "--out", "run7", "--resume", "--no-progress",
                     *sets("train.max_steps=8", "train.save_every=2", "train.keep_last=3"))
        return result, classify(result, expect="ok", ok=result.returncode == 0)

    case("partial last line in `metrics.jsonl`, then `--resume`", partial_metrics)

    def big_line() -> tuple[subprocess.CompletedProcess, str]:
        Path("big.txt").write_text(("1 2 3 4 5 6 7 8 9 " * 600_000)[:10_000_000] + "\n")
        started = time.perf_counter()
        result = cli("generate", "ck", "--input", "big.txt", "--beam", "1", timeout=240)
        result.stdout = f"{time.perf_counter() - started:.1f} s"
        return result, classify(result)

    case("a 10 MB input line to `generate`", big_line)
    case("`generate --max-len-b 100000000`", lambda: (lambda r: (r, classify(r, expect="ok", ok=r.returncode == 0)))(
        cli("generate", "ck", "--input", "in.txt", "--beam", "1", "--max-len-b", "100000000", timeout=240)))
    shutil.rmtree(root, ignore_errors=True)
    counts: dict[str, int] = {}
    for _, _, outcome in rows:
        counts[outcome] = counts.get(outcome, 0) + 1
    print(f"\n{len(rows)} cases: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))


if __name__ == "__main__":
    sys.exit(main())
