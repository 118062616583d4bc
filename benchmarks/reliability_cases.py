"""Hostile-input, data-loss and exit-status cases, run against the real ``hybridformer`` console script; each
outcome is classified. Prints a markdown table (case | exit | outcome). The first part covers training runs and
the decoding front door; :func:`new_surfaces` covers convert, longify, the bounded JSON/YAML reader,
tune-weights, embed, ct2 and resume; :func:`front_door_and_server` the progress bars, a stopped ``evaluate``,
``--help``, a full tmpfs, archives, ``init_from`` an int8 checkpoint and the HTTP server under hostile clients.

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
    new_surfaces(root, case)
    front_door_and_server(root, case)
    shutil.rmtree(root, ignore_errors=True)
    counts: dict[str, int] = {}
    for _, _, outcome in rows:
        counts[outcome] = counts.get(outcome, 0) + 1
    print(f"\n{len(rows)} cases: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))


def expect_error(*args, **kwargs) -> tuple[subprocess.CompletedProcess, str]:
    result = cli(*args, **kwargs)
    return result, classify(result)


def expect_ok(*args, **kwargs) -> tuple[subprocess.CompletedProcess, str]:
    result = cli(*args, **kwargs)
    return result, classify(result, expect="ok", ok=result.returncode == 0)


def new_surfaces(root: Path, case: Callable) -> None:
    """convert, longify, the JSON/YAML reader, tune-weights, embed, ct2 and resume under hostile input."""
    import resource

    import torch
    from safetensors.torch import load_file, save_file

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from interop.hf_tiny import save_tiny, write_tiny_gguf

    from hybridformer import ModelConfig, build_model, load_checkpoint, save_checkpoint

    hf_model, hf_dir = save_tiny("llama", root / "hf")

    def hf_case(name: str, tensors: Callable | None = None, **changes) -> Path:
        folder = root / f"hf-{name}"
        shutil.copytree(hf_dir, folder)
        config = json.loads((folder / "config.json").read_text())
        for key, value in changes.items():
            config.pop(key, None) if value is None else config.__setitem__(key, value)
        (folder / "config.json").write_text(json.dumps(config))
        if tensors is not None:
            weights = load_file(folder / "model.safetensors")
            tensors(weights)
            save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
        return folder

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (150_000, 150_000))

    case("`train` under `ulimit -f` (file too large while saving)", lambda: expect_error(
        "train", "exp.yaml", "--out", root / "run-fsize", "--no-progress",
        *sets("train.max_steps=4", "train.save_every=2"), preexec_fn=limited))
    for name, changes in [("`num_hidden_layers: 1e9`", {"num_hidden_layers": 10**9}),
                          ("no `num_attention_heads`", {"num_attention_heads": None}),
                          ("`num_attention_heads: 0`", {"num_attention_heads": 0}),
                          ("`rope_scaling: longrope` beside `rope_parameters`",
                           {"rope_scaling": {"rope_type": "longrope", "factor": 2.0}})]:
        folder = hf_case(name.strip("`").split(":")[0].replace(" ", "_"), **changes)
        case(f"`convert` with {name}", lambda f=folder: expect_error("convert", f, "--out", root / "conv-out"))
    for name, edit in [
        ("a wrong-shaped tensor", lambda t: t.__setitem__("model.layers.0.mlp.up_proj.weight", torch.zeros(3, 7))),
        ("a NaN tensor", lambda t: t["model.norm.weight"].__setitem__(0, float("nan"))),
        ("an int64 tensor", lambda t: t.__setitem__("model.norm.weight", t["model.norm.weight"].long())),
    ]:
        folder = hf_case(name.replace(" ", "_"), edit)
        case(f"`convert` with {name}", lambda f=folder: expect_error("convert", f, "--out", root / "conv-out"))
    case("`convert` an HF Llama (control)", lambda: expect_ok("convert", hf_dir, "--out", root / "conv-ok"))
    hf_model.config.num_hidden_layers = 10**9
    write_tiny_gguf(hf_model, root / "huge.gguf")
    case("`convert` GGUF `block_count` 1e9", lambda: expect_error("convert", root / "huge.gguf", "--out",
                                                                   root / "conv-out"))
    hf_model.config.num_hidden_layers = 2
    data = write_tiny_gguf(hf_model, root / "headless.gguf").read_bytes()
    key = b"llama.attention.head_count"
    at = data.index(len(key).to_bytes(8, "little") + key) + 8 + len(key) + 4  # past the key and its value type
    (root / "headless.gguf").write_bytes(data[:at] + (0).to_bytes(4, "little") + data[at + 4:])  # head_count 0
    case("`convert` GGUF `head_count` 0", lambda: expect_error("convert", root / "headless.gguf", "--out",
                                                               root / "conv-out"))
    for flag, value in [("--max-positions", "1000000000"), ("--max-positions", str(2**63)),
                        ("--max-positions", "1000000000000"), ("--global-tokens", "1000000000")]:
        case(f"`longify {flag} {value}`", lambda flag=flag, value=value: expect_error(
            "longify", "ck", "--attention", "sliding_window:window=4", flag, value, "--out", root / "long-out"))
    made = cli("longify", "ck", "--attention", "sliding_window:window=4", "--max-positions", str(2**24),
               "--out", root / "long-max")
    assert made.returncode == 0, made.stderr
    case("`generate --max-len-b 1e8` on a model longified to 2**24 positions", lambda: expect_ok(
        "generate", root / "long-max", "--input", "in.txt", "--max-len-b", "100000000", timeout=240))

    huge, deep = "9" * 5000, "[" * 100_000 + "]" * 100_000
    Path("deep.yaml").write_text("model: " + "[" * 100_000)
    Path("huge.json").write_text(f'{{"d_model": {huge}}}')
    Path("twice.yaml").write_text("d_model: 64\nd_model: 128\n")
    for name in ("deep.yaml", "huge.json", "twice.yaml"):
        case(f"`config check {name}`", lambda name=name: expect_error("config", "check", name))
    case("`config check --set d_model=<5,000 digits>`", lambda: expect_error("config", "check", "--set",
                                                                               f"d_model={huge}"))
    bad_config = Path(shutil.copytree("ck", "ck-config"))
    (bad_config / "config.json").write_text((bad_config / "config.json").read_text()[:-2] + f', "x": {huge}}}')
    case("checkpoint `config.json` with a 5,000-digit integer", lambda: expect_error(
        "generate", bad_config, "--input", "in.txt"))
    bad_chat = Path(shutil.copytree("ck", "ck-chat"))
    (bad_chat / "tokenizer_config.json").write_text('{"chat_template": ' + deep + "}")
    case("`tokenizer_config.json` nested 100,000 deep", lambda: expect_error(
        "generate", bad_chat, "--input", "in.txt", "--chat"))
    Path("train.jsonl").write_text('{"source": "1 2", "target": "2 1"}\n{"source": ' + huge + "}\n")
    Path("jsonl.yaml").write_text("data: {format: jsonl, train_file: train.jsonl, valid_file: train.jsonl}\n")
    case("JSONL training data with a 5,000-digit integer", lambda: expect_error(
        "train", "jsonl.yaml", "--out", root / "run-jsonl", "--no-progress"))
    Path("nan.json").write_text('{"weights": [NaN, Infinity]}')
    for source in ("/dev/zero", "nan.json"):
        case(f"`generate CK CK --weights @{source}`", lambda source=source: expect_error(
            "generate", "ck", "ck", "--input", "in.txt", "--weights", f"@{source}", timeout=60))

    Path("dev.src").write_text("1 2 3\n")
    Path("dev.ref").write_text("3 2 1\n")
    dev = ["--src", "dev.src", "--ref", "dev.ref", "--out", root / "w.json"]
    other = ModelConfig(arch="encoder_decoder", vocab_size=50, d_model=16, heads=2, ffn_dim=32,
                        encoder={"layers": 1}, decoder={"layers": 1})
    save_checkpoint(root / "ck-other", build_model(other), other, load_checkpoint("ck").tokenizer)
    case("`tune-weights` on two vocabularies", lambda: expect_error("tune-weights", "ck", root / "ck-other", *dev))
    case("`tune-weights --step 1e-9`", lambda: expect_error("tune-weights", "ck", "ck", *dev, "--step", "1e-9"))
    tokenizer = load_checkpoint("ck").tokenizer
    encoder = ModelConfig(arch="encoder_classifier", num_classes=0, vocab_size=tokenizer.get_vocab_size(), d_model=16,
                          heads=2, ffn_dim=32, encoder={"layers": 1}, position="sinusoidal")
    save_checkpoint(root / "enc", build_model(encoder), encoder, tokenizer)
    Path("big-line.txt").write_text(("1 2 3 4 5 6 7 8 9 " * 600_000)[:10_000_000] + "\n")
    case("`embed` a 10 MB line", lambda: expect_ok("embed", root / "enc", "--input", "big-line.txt", "--out",
                                                     root / "emb.jsonl", timeout=240))
    made = cli("export", "ck", "--to", "ct2", "--out", root / "ct2")
    assert made.returncode == 0, made.stderr
    model_bin = root / "ct2" / "model.bin"
    model_bin.write_bytes(model_bin.read_bytes()[: model_bin.stat().st_size // 2])
    case("`generate --engine ct2` on a truncated `model.bin`", lambda: expect_error(
        "generate", root / "ct2", "--engine", "ct2", "--input", "in.txt"))

    def engine_note() -> tuple[subprocess.CompletedProcess, str]:
        result = cli("generate", "ck", "--engine", "ct2", "--input", "in.txt")
        return result, classify(result, expect="ok", ok=result.returncode == 0 and "exports" in result.stderr)

    case("`--engine ct2` on a checkpoint says where it writes the export", engine_note)
    bad_meta = Path(shutil.copytree("ck", "ck-meta"))
    (bad_meta / "meta.json").write_text('{"step": ')
    case("`export --to hf` with a corrupt `meta.json`", lambda: expect_error(
        "export", bad_meta, "--to", "hf", "--out", root / "hf-out"))
    looping = Path(shutil.copytree("ck", "ck-loop"))
    (looping / "tokenizer_config.json").write_text(json.dumps(
        {"chat_template": "{% for i in range(10**12) %}x{% endfor %}"}))
    case("a chat template looping `range(10**12)`", lambda: expect_error(
        "generate", looping, "--input", "in.txt", "--chat"))
    foreign = Path(shutil.copytree("ck", "ck-foreign"))
    from tokenizers import Tokenizer, models, trainers

    smaller = Tokenizer(models.WordLevel(unk_token="<unk>"))
    smaller.train_from_iterator(["1 2 3 4 5"], trainers.WordLevelTrainer(special_tokens=["<pad>", "<s>", "</s>",
                                                                                        "<unk>"]))
    smaller.save(str(foreign / "tokenizer.json"))
    case("a foreign `tokenizer.json` smaller than the model's vocabulary", lambda: expect_error(
        "generate", foreign, "--input", "in.txt"))
    shutil.copytree(root / "run", root / "run-seed")
    case("`--resume` after the seed and the data changed", lambda: expect_error(
        "train", "exp.yaml", "--out", root / "run-seed", "--resume", "--no-progress",
        *sets("train.max_steps=8", "train.save_every=2", "train.keep_last=3", "train.seed=5",
              "data.builtin_train=300")))
    case("`--resume` after only the cadence changed (control)", lambda: expect_ok(
        "train", "exp.yaml", "--out", root / "run-seed", "--resume", "--no-progress",
        *sets("train.max_steps=8", "train.save_every=4", "train.keep_last=3", "train.eval_every=2")))
    shutil.copytree(root / "run", root / "run-batch")
    latest = sorted((root / "run-batch" / "checkpoints").glob("step-*"))[-1] / "trainer_state.pt"
    state = torch.load(latest, weights_only=True)
    torch.save({**state, "data": {"epoch": 0, "batch": 10**9}}, latest)
    case("trainer state with data batch 10^9", lambda: expect_error(
        "train", "exp.yaml", "--out", root / "run-batch", "--resume", "--no-progress",
        *sets("train.max_steps=8", "train.save_every=2", "train.keep_last=3")))


def on_terminal(args: list, **kwargs) -> tuple[subprocess.CompletedProcess, str]:
    """``tests/conftest.py``'s ``run_on_terminal`` (stderr on a pseudo-terminal), as (CompletedProcess, shown)."""
    from conftest import run_on_terminal

    proc, stdout, shown = run_on_terminal(args, **kwargs)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, shown), shown


def front_door_and_server(root: Path, case: Callable) -> None:
    """Progress bars, a stopped ``evaluate``, ``--help``, a full tmpfs, archives, ``init_from`` int8, and the
    server: hostile values, half-sent requests, start-up refusals."""
    import gzip
    import socket
    import urllib.request

    bar = r"(?<![0-9])([0-9]+)/\1(?![0-9])"  # a finished bar: N/N
    for name, args in [("convert", ["convert", root / "hf", "--out", root / "conv-bar"]),
                       ("export --to hf", ["export", root / "conv-ok", "--to", "hf", "--out", root / "hf-bar"])]:
        def shows_bar(args=args) -> tuple[subprocess.CompletedProcess, str]:
            import re

            result, shown = on_terminal(args)
            good = result.returncode == 0 and re.search(bar, shown) and result.stdout.startswith("wrote ")
            return result, classify(result, expect="ok", ok=bool(good))

        case(f"`{name}` on a terminal shows the progress bar (stdout: one line)", shows_bar)
    Path("long.txt").write_text("1 2 3 4 5 6 7 8 9 10\n" * 20_000)
    for sig, status in [(signal.SIGINT, 130), (signal.SIGTERM, 143)]:
        def stopped(sig=sig, status=status) -> tuple[subprocess.CompletedProcess, str]:
            result, shown = on_terminal(["evaluate", "ck", "--src", "long.txt", "--ref", "long.txt", "--metric",
                                         "ppl", "--batch-tokens", "64", "--json"],
                                        until=r"lines.*?(?<![0-9])[1-9][0-9]*/[0-9]+",
                                        then=lambda proc: proc.send_signal(sig))
            partial = result.stdout.strip() and json.loads(result.stdout).get("partial")
            good = result.returncode == status and partial and f"over {partial}" in shown
            return result, classify(result, expect="ok", ok=bool(good))

        case(f"{signal.Signals(sig).name} during `evaluate --metric ppl` prints a partial score, exit {status}",
             stopped)

    def help_fast() -> tuple[subprocess.CompletedProcess, str]:
        probe = ("import sys, time; t = time.perf_counter(); from hybridformer.cli import main; "
                 "sys.argv = ['hybridformer', 'merge', '--help']; main(); "
                 "print('torch' in sys.modules, time.perf_counter() - t, file=sys.stderr)")
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
        heavy = result.stderr.split()[-2:] if result.stderr else ["True"]
        return result, classify(result, expect="ok", ok=result.returncode == 0 and heavy[0] == "False")

    case("`merge --help` answers without importing torch", help_fast)

    def from_elsewhere() -> tuple[subprocess.CompletedProcess, str]:
        code = ("import os; os.chdir('/'); from hybridformer.cli.bench_serve import DEFAULT_SENTENCES as d; "
                "from hybridformer.bench.serve import read_sentences; print(len(read_sentences(d, 3)))")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        return result, classify(result, expect="ok", ok=result.returncode == 0 and result.stdout.strip() == "3")

    case("`bench serve`'s default `--sentences` from another directory", from_elsewhere)

    mnt = root / "tmpfs"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=800k", "tmpfs", str(mnt)], capture_output=True).returncode:
        print("| `train` into a full tmpfs | - | skipped (mount not permitted) |", flush=True)
    else:
        try:
            case("`train` into an 800 KB tmpfs (disk full while saving)", lambda: expect_error(
                "train", "exp.yaml", "--out", mnt / "run", "--no-progress",
                *sets("train.max_steps=6", "train.save_every=2")))
        finally:
            subprocess.run(["umount", str(mnt)], capture_output=True)

    from hybridformer import ModelConfig, build_model, load_checkpoint, save_checkpoint

    flipped = bytearray(gzip.compress(b"".join(_tar_member(f"test/{label}/{i}.txt", b"1 2 3 " * 300)
                                                 for label in ("0", "1") for i in range(20)) + b"\0" * 1024))
    for i in range(200, 260):
        flipped[i] ^= 0xFF
    Path("flipped.tar.gz").write_bytes(bytes(flipped))
    tokenizer = load_checkpoint("ck").tokenizer
    two = ModelConfig(arch="encoder_classifier", num_classes=2, vocab_size=tokenizer.get_vocab_size(), d_model=16,
                      heads=2, ffn_dim=32, encoder={"layers": 1}, position="sinusoidal")
    classifier = save_checkpoint(root / "cls", build_model(two), two, tokenizer)
    case("`evaluate --labeled` a `.tar.gz` with flipped bytes", lambda: expect_error(
        "evaluate", classifier, "--labeled", "flipped.tar.gz"))
    made = cli("quantize", "ck", "--scheme", "int8", "--out", root / "ck-int8")
    assert made.returncode == 0, made.stderr
    case("`train.init_from` an int8 checkpoint", lambda: expect_error(
        "train", "exp.yaml", "--out", root / "run-int8", "--no-progress",
        *sets("train.max_steps=2", f"train.init_from={root / 'ck-int8'}")))

    for name, args in [("--log-level loud", ["--log-level", "loud"]), ("--api-key ''", ["--api-key", ""]),
                       ("--api-key sésame (non-ASCII)", ["--api-key", "sésame"])]:
        case(f"`serve {name}`", lambda args=args: expect_error("serve", "ck", *args, timeout=120))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([EXE, "serve", "ck", "--port", str(port), "--header-timeout", "1", "--log-level",
                               "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(url + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        deep = '{"inputs": ["1 2"], "x": ' + "[" * 50_000 + "]" * 50_000 + "}"
        for name, body in [("`temperature: Infinity`", '{"inputs": ["1 2"], "sample": true, "temperature": Infinity}'),
                           ("a 5,000-digit `seed`", '{"inputs": ["1 2"], "sample": true, "seed": ' + "9" * 5000 + "}"),
                           ("a lone `\\ud800` in an input", '{"inputs": ["1 \\ud800 2"]}'),
                           ("JSON nested 50,000 deep", deep)]:
            case(f"`POST /v1/generate` with {name} gets a 4xx", lambda body=body: _http_4xx(url, body))

        def half_sent() -> tuple[subprocess.CompletedProcess, str]:
            conn = socket.create_connection(("127.0.0.1", port))
            conn.sendall(b"POST /v1/generate HTTP/1.1\r\nHost: x\r\n")  # headers never end
            conn.settimeout(10)
            started = time.monotonic()
            try:
                closed = conn.recv(100) == b""
            except (TimeoutError, ConnectionResetError):
                closed = False
            conn.close()
            held = time.monotonic() - started
            result = subprocess.CompletedProcess(["half-sent"], 0 if closed else 1, "", f"closed after {held:.1f} s")
            return result, classify(result, expect="ok", ok=closed and held < 5)

        case("a half-sent request is closed at the header deadline", half_sent)
    finally:
        server.terminate()
        server.wait(timeout=60)


def _tar_member(name: str, data: bytes) -> bytes:
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()[:-1024]  # without the end-of-archive blocks: members concatenate


def _http_4xx(url: str, body: str) -> tuple[subprocess.CompletedProcess, str]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url + "/v1/generate", data=body.encode("utf-8", "surrogatepass"),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    result = subprocess.CompletedProcess(["POST"], status, "", "")
    return result, classify(result, expect="ok", ok=400 <= status < 500)


if __name__ == "__main__":
    sys.exit(main())
