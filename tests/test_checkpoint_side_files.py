"""A converted instruct model's side files (tokenizer, ``tokenizer_config.json`` with its chat template) travel
through every command that writes a checkpoint, and every file those commands write has one mode."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from conftest import TINY_TEXT, run_entry  # noqa: E402
from interop.hf_tiny import CHAT_TEMPLATE, converted_tiny  # noqa: E402

from hybridformer import average_checkpoints, load_checkpoint, merge_checkpoints  # noqa: E402
from hybridformer.compress import prune_checkpoint, quantize_checkpoint  # noqa: E402
from hybridformer.interop.export import export_hf  # noqa: E402
from hybridformer.longify import longify  # noqa: E402


@pytest.fixture(scope="module")
def instruct(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return converted_tiny(tmp_path_factory.mktemp("instruct"), TINY_TEXT, "llama")


def test_longified_instruct_model_answers_chat_through_the_cli(instruct: Path, tmp_path: Path) -> None:
    done = run_entry("longify", instruct, "--attention", "sliding_window:window=4", "--out", tmp_path / "long")
    assert done.returncode == 0, done.stderr
    (tmp_path / "in.txt").write_text("hello\n")
    chat = run_entry("generate", tmp_path / "long", "--chat", "--input", tmp_path / "in.txt", "--max-len-b", "3")
    assert chat.returncode == 0 and len(chat.stdout.splitlines()) == 1, chat.stderr
    assert load_checkpoint(tmp_path / "long").chat_template.template == CHAT_TEMPLATE


def test_every_writer_carries_the_side_files_with_one_file_mode(instruct: Path, tmp_path: Path) -> None:
    source = load_checkpoint(instruct)
    assert source.chat_template is not None and source.tokenizer_config["eos_token"] == "</s>"
    written = {
        "longify": longify(instruct, tmp_path / "long", attention="sliding_window:window=4"),
        "quantize": quantize_checkpoint(instruct, tmp_path / "int8").path,
        "prune": prune_checkpoint(instruct, tmp_path / "pruned", sparsity_target=0.5).path,
        "average": average_checkpoints([instruct, instruct], tmp_path / "avg"),
        "merge": merge_checkpoints([instruct, instruct], "linear", tmp_path / "merged"),
        "export": export_hf(instruct, tmp_path / "hf"),
    }
    umask = os.umask(0)
    os.umask(umask)
    for command, path in {"convert": instruct, **written}.items():
        assert json.loads((Path(path) / "tokenizer_config.json").read_text()) == source.tokenizer_config, command
        assert (Path(path) / "tokenizer.json").read_text() == source.tokenizer.to_str(), command
        modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in Path(path).iterdir()}
        assert set(modes.values()) == {0o666 & ~umask}, (command, modes)
