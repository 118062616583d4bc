"""Shared test helpers: tiny configs, seeded RNG, the path to the shared real data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Two pytest-xdist workers share the CI's two cores: one torch thread each, so neither oversubscribes them.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def require_data(*parts: str) -> Path:
    """Path under ../shared/data, or skip the test with the reason when it is absent."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not found at {path} (needs ../shared/data beside the checkout)")
    return path


SMOLLM2_GGUF = DATA.parent / "models" / "smollm2-135m-instruct" / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def smollm2_checkpoint(tmp_path_factory) -> Path:
    """The real SmolLM2 GGUF converted once per test session (skips when the model file is absent)."""
    if not SMOLLM2_GGUF.is_file():
        pytest.skip(f"real weights not found at {SMOLLM2_GGUF} (needs ../shared/models beside the checkout)")
    pytest.importorskip("gguf")
    from hybridformer import convert

    return convert(SMOLLM2_GGUF, tmp_path_factory.mktemp("smollm2") / "ckpt")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# ----------------------------------------------------------------------------- tiny checkpoints (decoding, CLI)

TINY_TEXT = [
    "the cat sat on the mat", "a dog ran in the park", "the bird sang a song", "we read a good book",
    "die katze sass auf der matte", "ein hund lief im park", "der vogel sang ein lied", "wir lasen ein gutes buch",
]


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """A small BPE tokenizer trained in-test: <pad>=0, <s>=1, </s>=2, <unk>=3 (the model's pad/bos/eos)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=80, special_tokens=["<pad>", "<s>", "</s>", "<unk>"])
    tokenizer.train_from_iterator(TINY_TEXT, trainer)
    return tokenizer


@pytest.fixture
def tiny_checkpoint(tmp_path, tiny_tokenizer):
    """``make(arch="encoder_decoder", **config)`` -> path of a randomly initialised tiny checkpoint."""
    from hybridformer import ModelConfig, build_model, save_checkpoint

    def make(arch: str = "encoder_decoder", name: str | None = None, **overrides) -> Path:
        settings = dict(arch=arch, vocab_size=tiny_tokenizer.get_vocab_size(), d_model=16, heads=2, ffn_dim=32,
                        dropout=0.0, encoder={"layers": 1}, decoder={"layers": 1})
        cfg = ModelConfig(**(settings | overrides))
        return save_checkpoint(tmp_path / (name or arch), build_model(cfg).eval(), cfg, tiny_tokenizer)

    return make


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run ``hybridformer ARGS`` in-process: (exit code, stdout, stderr)."""
    import sys

    from hybridformer.cli import main

    monkeypatch.setattr(sys, "argv", ["hybridformer", *map(str, args)])
    try:
        code = main()
    except SystemExit as exc:
        code = exc.code or 0
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def in_process(monkeypatch, capsys):
    """``in_process(*args)``: ``hybridformer ARGS`` run in-process, as a result with ``returncode``, ``stdout`` and
    ``stderr`` (what ``assert_one_line_error`` reads). For matrices of refusals: a console-script subprocess costs a
    torch import (~3 s here); one real-entry test per command stays (``run_entry``)."""
    from types import SimpleNamespace

    def run(*args):
        code, out, err = run_cli(monkeypatch, capsys, *args)
        return SimpleNamespace(returncode=code, stdout=out, stderr=err)

    return run


@pytest.fixture
def one_thread():
    """Tiny models run fastest (and steadiest on a shared 2-core machine) on one torch thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ----------------------------------------------------------------------------- the real console script

def entry_env(**extra: str) -> dict[str, str]:
    """The environment for a subprocess that must import this checkout (not another install)."""
    import hybridformer

    src = str(Path(hybridformer.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "OMP_NUM_THREADS": "1", **extra}


def entry_command() -> list[str]:
    """The installed ``hybridformer`` console script (``sys.exit(main())``), or the same call through python."""
    import shutil
    import sys

    script = shutil.which("hybridformer")
    return [script] if script else [sys.executable, "-c", "import sys; from hybridformer.cli import main; "
                                                          "sys.exit(main())"]


def run_entry(*args, timeout: float = 120, **kwargs):
    """Run the real console script in a subprocess: the real exit status and stderr, no CliRunner between."""
    import subprocess

    kwargs.setdefault("env", entry_env())
    if "stdout" not in kwargs and "stderr" not in kwargs:
        kwargs["capture_output"] = True
    return subprocess.run([*entry_command(), *map(str, args)], text=True, timeout=timeout, **kwargs)


def assert_one_line_error(result, status: int = 2, *words: str, alone: bool = False) -> str:
    """A clean failure: exit ``status``, no traceback, the error as one ``error:`` line naming ``words``,
    last on stderr (after any progress lines the command printed; ``alone``: nothing else on stderr)."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == status, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr[-2000:]
    assert not alone or len(lines) == 1, result.stderr[-2000:]
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


def stand_in_overrides(recipe: Path, directory: Path) -> list[str]:
    """``--set`` overrides that let a fine-tuning recipe load in tests: its ``train.init_from`` checkpoint is
    made by the recipe's own first command (``hybridformer convert``), so a model config stands in for it
    in ``directory``. No overrides for a recipe that trains from scratch."""
    from hybridformer.config import ModelConfig, read_config_file

    if read_config_file(recipe).get("train", {}).get("init_from") is None:
        return []
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(ModelConfig(arch="decoder_lm").model_dump_json())
    return [f"train.init_from={directory}"]


def run_on_terminal(args: list, *, until: str | None = None, then=None, timeout: float = 180):
    """Run the real console script with stderr on a pseudo-terminal (so progress bars draw): (process, stdout,
    what the terminal showed). The terminal is drained while it runs (a full pty buffer would block the writer);
    once what it showed matches the regex ``until``, ``then(process)`` is called once (e.g. to send a signal)."""
    import pty
    import re
    import select
    import subprocess
    import time

    master, slave = pty.openpty()
    proc = subprocess.Popen([*entry_command(), *map(str, args)], stdout=subprocess.PIPE, stderr=slave,
                            env=entry_env(COLUMNS="100"))
    os.close(slave)
    shown, deadline = "", time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            chunk = b""
            if select.select([master], [], [], 0.2)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the writer closed its end
                    pass
                shown += chunk.decode(errors="replace")
            if until is not None and re.search(until, shown):
                then(proc)
                until = None
            if not chunk and proc.poll() is not None:
                break
        if proc.poll() is None:  # past the deadline: a hang
            proc.kill()
        stdout = proc.communicate(timeout=60)[0].decode()
    finally:
        proc.kill()
        os.close(master)
    return proc, stdout, shown
