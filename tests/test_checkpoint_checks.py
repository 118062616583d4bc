"""A checkpoint whose files disagree is refused before anything is built, never loaded silently wrong (issue 17).

Before: an int64 weight was cast, NaN weights decoded to empty output with exit 0, a config.json
edited to another position scheme or activation loaded without complaint, and a config.json
claiming a 2**40 vocabulary or 3,000 layers was built (out of memory) before the weights were read.
"""

from __future__ import annotations

import json
import time

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from hybridformer import load_checkpoint
from hybridformer.checkpoint import FINGERPRINT, all_finite
from hybridformer.errors import CheckpointError
from tests.conftest import TINY_TEXT, assert_one_line_error, run_entry


def _edit_config(path, **changes):
    """Set top-level keys of config.json; ``encoder__layers`` sets ``encoder.layers``."""
    config = json.loads((path / "config.json").read_text())
    for key, value in changes.items():
        section, _, name = key.rpartition("__")
        (config[section] if section else config)[name] = value
    (path / "config.json").write_text(json.dumps(config))


def _edit_weights(path, edit=None, *, keep_metadata=True):
    with safe_open(str(path / "model.safetensors"), "pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(path / "model.safetensors"))
    if edit is not None:
        edit(tensors)
    save_file(tensors, str(path / "model.safetensors"), metadata=metadata if keep_metadata else {"format": "pt"})


def test_fingerprint_is_stored_and_checked(tiny_checkpoint):
    path = tiny_checkpoint()
    with safe_open(str(path / "model.safetensors"), "pt") as handle:
        assert len(handle.metadata()[FINGERPRINT]) == 64
    load_checkpoint(path)
    _edit_config(path, position="rope")
    with pytest.raises(CheckpointError, match=r"does not match the architecture.*position: 'sinusoidal' -> 'rope'"):
        load_checkpoint(path)


def test_edited_activation_is_refused_through_the_cli(tiny_checkpoint, tmp_path):
    path = tiny_checkpoint()
    _edit_config(path, activation="gelu")
    (tmp_path / "in.txt").write_text("the cat\n")
    result = run_entry("generate", path, "--input", tmp_path / "in.txt")
    assert_one_line_error(result, 2, "activation: 'relu' -> 'gelu'")


def test_training_only_keys_and_old_checkpoints_still_load(tiny_checkpoint):
    path = tiny_checkpoint()
    _edit_config(path, dropout=0.3)  # no effect on inference: not part of the architecture
    assert load_checkpoint(path).config.dropout == 0.3
    old = tiny_checkpoint(name="old")
    _edit_weights(old, keep_metadata=False)  # as written before fingerprints existed
    _edit_config(old, activation="gelu")
    assert load_checkpoint(old).config.activation == "gelu"


def test_int64_weight_is_refused(tiny_checkpoint):
    path = tiny_checkpoint()
    _edit_weights(path, lambda t: t.update({"output.weight": t["output.weight"].round().long()}))
    with pytest.raises(CheckpointError, match="output.weight: stored as int64, the model needs float32"):
        load_checkpoint(path)


def test_nan_weights_are_one_line_through_the_cli(tiny_checkpoint, tmp_path):
    path = tiny_checkpoint()
    _edit_weights(path, lambda t: t["encoder.final_norm.weight"].__setitem__(0, float("nan")))
    (tmp_path / "in.txt").write_text("the cat\n")
    result = run_entry("generate", path, "--input", tmp_path / "in.txt")
    assert_one_line_error(result, 2, "NaN or infinite", "encoder.final_norm.weight")


def test_all_finite_catches_nan_and_inf_and_is_not_fooled_by_an_overflowing_sum():
    big = torch.full((4,), 3e38)  # finite, but its sum overflows to inf
    assert all_finite(big) and all_finite(torch.zeros(3, dtype=torch.bfloat16))
    for bad in (float("nan"), float("inf"), float("-inf")):
        assert not all_finite(torch.tensor([1.0, bad, 2.0]))
    assert not all_finite(torch.tensor([float("inf"), float("-inf")]))  # the sum is NaN: caught as well


def test_loading_draws_no_random_init(tiny_checkpoint, monkeypatch):
    """The model built to receive a checkpoint is not randomly initialised (its every tensor is overwritten), and
    the initialisers work again after the load."""
    path = tiny_checkpoint()
    draws = []
    for name in ("uniform_", "normal_"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, *a, f=original, **k: draws.append(1) or f(self, *a, **k))
    loaded = load_checkpoint(path)
    assert not draws
    torch.nn.Linear(4, 4)
    assert draws  # restored
    assert all(bool(torch.isfinite(t).all()) for t in loaded.model.state_dict().values() if t.is_floating_point())


@pytest.mark.parametrize("key, value, words", [
    ("vocab_size", 2**40, ["output.weight", "1099511627776"]),
    ("encoder__layers", 3000, ["encoder.layers=3000", "hold 1 encoder layers"]),
    ("d_model", 2**30, ["cannot be built"]),
    ("ffn_dim", 2**20, ["vs model"]),
])
def test_huge_config_is_refused_before_building(tiny_checkpoint, monkeypatch, key, value, words):
    import hybridformer.models as models

    path = tiny_checkpoint()
    _edit_weights(path, keep_metadata=False)  # no fingerprint: only the header's shapes can tell
    _edit_config(path, **{key: value})
    built = []
    real_build = models.build_model
    monkeypatch.setattr(models, "build_model", lambda cfg: built.append(torch.get_default_device()) or real_build(cfg))
    start = time.perf_counter()
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert time.perf_counter() - start < 20
    assert all(device.type == "meta" for device in built)  # nothing was built with real memory
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize("text, words", [
    ('{"labels": [', ["meta.json:1", "invalid JSON"]),
    ("[1, 2]", ["meta.json", "JSON object"]),
])
def test_invalid_meta_json_is_one_line(tiny_checkpoint, text, words):
    path = tiny_checkpoint()
    (path / "meta.json").write_text(text)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    for word in words:
        assert word in str(info.value)


def test_a_foreign_tokenizer_is_refused(tiny_checkpoint, tmp_path):
    """A smaller tokenizer.json fits the vocabulary but maps text to other ids: refused by the saved digest."""
    from tokenizers import Tokenizer, models, trainers

    ck = tiny_checkpoint("decoder_lm")
    load_checkpoint(ck)
    foreign = Tokenizer(models.WordLevel(unk_token="<unk>"))
    foreign.train_from_iterator(TINY_TEXT, trainers.WordLevelTrainer(special_tokens=["<pad>", "<s>", "</s>", "<unk>"]))
    foreign.save(str(ck / "tokenizer.json"))
    (tmp_path / "in.txt").write_text("the cat\n")
    result = run_entry("generate", ck, "--input", tmp_path / "in.txt")
    assert_one_line_error(result, 2, "tokenizer.json is not the tokenizer the weights were saved with")
