"""Every unsupported field, missing file and corrupt file is a one-line error naming it (API and real CLI)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from conftest import assert_one_line_error, run_entry  # noqa: E402
from interop.hf_tiny import save_tiny  # noqa: E402

from hybridformer import convert  # noqa: E402
from hybridformer.errors import CheckpointError, ConfigError, DataError  # noqa: E402


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    _, path = save_tiny("qwen2", tmp_path_factory.mktemp("qwen2") / "hf")
    return path


def edited(folder: Path, tmp_path: Path, **changes) -> Path:
    """A copy of ``folder`` whose config.json has ``changes`` (None deletes a key)."""
    copy = tmp_path / "edited"
    copy.mkdir()
    for file in folder.iterdir():
        (copy / file.name).write_bytes(file.read_bytes())
    config = json.loads((copy / "config.json").read_text())
    for key, value in changes.items():
        config.pop(key, None) if value is None else config.__setitem__(key, value)
    (copy / "config.json").write_text(json.dumps(config))
    return copy


@pytest.mark.parametrize(("changes", "named"), [
    ({"model_type": "falcon"}, "model_type='falcon'"),
    ({"hidden_act": "gelu"}, "hidden_act='gelu'"),
    ({"rope_parameters": {"rope_type": "proportional", "rope_theta": 1e4, "factor": 2.0}}, "rope_scaling.rope_type"),
    ({"rope_parameters": {"rope_type": "longrope", "rope_theta": 1e4, "factor": 2.0}}, "longrope needs both"),
    ({"rope_parameters": {"rope_type": "default", "rope_theta": 1e4, "partial_rotary_factor": 0.5}},
     "partial_rotary_factor"),
    ({"quantization_config": {"quant_method": "gptq"}}, "quantization_config"),
    ({"use_sliding_window": True}, "use_sliding_window"),
    ({"num_attention_heads": 3}, "converted config is invalid"),
])
def test_unsupported_fields_are_named(folder: Path, tmp_path: Path, changes: dict, named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace("(", r"\(").replace("[", r"\[")):
        convert(edited(folder, tmp_path, **changes), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_informational_fields_are_ignored(folder: Path, tmp_path: Path) -> None:
    convert(edited(folder, tmp_path, initializer_range=0.5, use_cache=False, transformers_version="0.0"),
            tmp_path / "out")
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_missing_and_corrupt_files(folder: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file or folder"):
        convert(tmp_path / "absent", tmp_path / "out")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        convert(empty, tmp_path / "out")
    copy = edited(folder, tmp_path)
    (copy / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="invalid JSON"):
        convert(copy, tmp_path / "out")
    (copy / "config.json").write_bytes((folder / "config.json").read_bytes())
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        convert(copy, tmp_path / "out")
    weights.unlink()
    with pytest.raises(CheckpointError, match="no weights"):
        convert(copy, tmp_path / "out")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 20)
    with pytest.raises(CheckpointError, match="not a readable GGUF file"):
        convert(bad, tmp_path / "out")


def test_missing_and_unexpected_tensors(folder: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    copy = edited(folder, tmp_path)
    tensors = load_file(copy / "model.safetensors")
    save_file({k: v for k, v in tensors.items() if "layers.1.mlp.up_proj" not in k}, copy / "model.safetensors")
    with pytest.raises(CheckpointError, match="missing tensor.*layers.1.mlp.up_proj"):
        convert(copy, tmp_path / "out")
    save_file({**tensors, "model.layers.0.extra_norm.weight": torch.ones(3)}, copy / "model.safetensors")
    with pytest.raises(CheckpointError, match="extra_norm"):
        convert(copy, tmp_path / "out")


def test_pickled_bin_is_read_weights_only(folder: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    copy = edited(folder, tmp_path)
    torch.save(load_file(copy / "model.safetensors"), copy / "pytorch_model.bin")
    (copy / "model.safetensors").unlink()
    convert(copy, tmp_path / "out")
    (copy / "pytorch_model.bin").write_bytes(b"\x80\x04not a pickle of tensors")
    with pytest.raises(CheckpointError, match="weights-only"):
        convert(copy, tmp_path / "out2")


def test_cli_errors_are_one_line(folder: Path, tmp_path: Path) -> None:
    result = run_entry("convert", edited(folder, tmp_path, hidden_act="relu"), "--out", tmp_path / "out")
    assert_one_line_error(result, 2, "hidden_act='relu'")
    convert(folder, tmp_path / "good")
    assert_one_line_error(run_entry("convert", folder, "--out", tmp_path / "good"), 2, "--overwrite")


@pytest.mark.parametrize(("changes", "named"), [
    ({"num_hidden_layers": 1_000_000_000}, "claims 1,000,000,000 decoder layers but the weights hold 2"),
    ({"num_attention_heads": None}, "lacks 'num_attention_heads'"),
    ({"num_attention_heads": 0}, "impossible value"),
    ({"rope_scaling": {"rope_type": "longrope", "factor": 2.0}}, "rope_scaling.rope_type='longrope'"),
])
def test_a_config_that_does_not_fit_the_tensors_is_refused_before_building(folder: Path, tmp_path: Path,
                                                                          changes: dict, named: str) -> None:
    with pytest.raises((ConfigError, CheckpointError), match=re.escape(named)):
        convert(edited(folder, tmp_path, **changes), tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("edit", "named"), [
    (lambda t: t.__setitem__("model.layers.0.mlp.up_proj.weight", torch.zeros(3, 7)), "do not fit the config"),
    (lambda t: t["model.layers.1.mlp.up_proj.weight"].__setitem__((0, 0), float("nan")), "NaN or infinite"),
    (lambda t: t.__setitem__("model.norm.weight", t["model.norm.weight"].long()), "stored as int64"),
])
def test_wrong_shaped_nan_and_integer_tensors_are_refused(folder: Path, tmp_path: Path, edit, named: str,
                                                          monkeypatch) -> None:
    from safetensors.torch import load_file, save_file

    from hybridformer.interop.folder import HFFolder

    copy = edited(folder, tmp_path)
    tensors = load_file(copy / "model.safetensors")
    edit(tensors)
    save_file(tensors, copy / "model.safetensors")
    if "NaN" not in named:  # shapes and dtypes are in the header: refused before any tensor is read
        monkeypatch.setattr(HFFolder, "get", lambda self, name: pytest.fail(f"read {name}"))
    with pytest.raises(CheckpointError, match=named):
        convert(copy, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.tmp-*"))


def test_a_wrong_shaped_gguf_tensor_is_refused_from_its_header(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("gguf")
    from interop.hf_tiny import write_tiny_gguf

    from hybridformer.interop.gguf import GGUFFile

    hf, _ = save_tiny("llama", tmp_path / "hf", head_dim=None, attention_bias=False, mlp_bias=False,
                      rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    hf.model.layers[0].mlp.up_proj.weight = torch.nn.Parameter(torch.zeros(3, 32))
    path = write_tiny_gguf(hf, tmp_path / "wrong.gguf")
    monkeypatch.setattr(GGUFFile, "get", lambda self, name: pytest.fail(f"dequantized {name}"))
    with pytest.raises(CheckpointError, match=r"up_proj.weight \(3, 32\) do not fit the config"):
        convert(path, tmp_path / "out")


def test_impossible_gguf_metadata_is_one_line(tmp_path: Path) -> None:
    pytest.importorskip("gguf")
    from interop.hf_tiny import write_tiny_gguf

    hf, _ = save_tiny("llama", tmp_path / "hf", head_dim=None, attention_bias=False, mlp_bias=False,
                      rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    hf.config.num_hidden_layers = 10**9  # only the block_count metadata says so; the file holds 2 blocks
    path = write_tiny_gguf(hf, tmp_path / "huge.gguf")
    assert_one_line_error(run_entry("convert", path, "--out", tmp_path / "out"), 2, "1,000,000,000 decoder layers")
