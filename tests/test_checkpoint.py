"""Checkpoints round-trip exactly, write atomically, and every corruption is a clear CheckpointError."""

import json

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from hybridformer import CheckpointError, ModelConfig, build_model, load_checkpoint, save_checkpoint

CFG = ModelConfig(vocab_size=40, d_model=16, heads=4, kv_heads=2, ffn_dim=32, dropout=0.0, position="t5",
                  encoder={"layers": 1}, decoder={"layers": 1})


def _tokenizer() -> Tokenizer:
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(["a b c", "b c d"], trainers.WordLevelTrainer(special_tokens=["<pad>", "<unk>"]))
    return tok


@pytest.fixture
def saved(tmp_path):
    model = build_model(CFG).eval()
    path = save_checkpoint(tmp_path / "ckpt", model, CFG, _tokenizer(), meta={"step": 7})
    return model, path


def test_save_load_gives_identical_outputs(saved):
    model, path = saved
    ckpt = load_checkpoint(path)
    src, tgt = torch.randint(3, 40, (2, 5)), torch.randint(3, 40, (2, 4))
    torch.testing.assert_close(ckpt.model(src, tgt), model(src, tgt), atol=0, rtol=0)
    assert ckpt.config == CFG and ckpt.meta == {"step": 7}
    assert ckpt.tokenizer.encode("a d").ids == _tokenizer().encode("a d").ids
    assert ckpt.model.output.weight is ckpt.model.tgt_embed.weight  # ties survive the round trip


def test_overwrite_is_atomic_and_leaves_no_temp_dirs(saved, tmp_path):
    model, path = saved
    save_checkpoint(path, model, CFG)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    assert not (path / "tokenizer.json").exists()  # the new directory replaced the old one whole


def test_failed_write_keeps_the_previous_checkpoint(saved):
    model, path = saved

    def crash(tmp):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        save_checkpoint(path, model, CFG, write_extra=crash)
    assert load_checkpoint(path).meta == {"step": 7}
    assert [p.name for p in path.parent.iterdir()] == ["ckpt"]


def test_missing_directory_and_files(saved, tmp_path):
    _, path = saved
    with pytest.raises(CheckpointError, match="no such checkpoint directory"):
        load_checkpoint(tmp_path / "nope")
    (path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing model.safetensors"):
        load_checkpoint(path)
    (path / "config.json").unlink()
    with pytest.raises(CheckpointError, match="missing config.json"):
        load_checkpoint(path)


def test_truncated_weights(saved):
    _, path = saved
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path)


def test_garbage_weights(saved):
    _, path = saved
    (path / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path)


def test_corrupt_config_json_and_invalid_config(saved):
    _, path = saved
    (path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="invalid JSON"):
        load_checkpoint(path)
    (path / "config.json").write_text(json.dumps({"heads": 3}))
    with pytest.raises(CheckpointError, match="invalid model config.*heads=3"):
        load_checkpoint(path)


def test_weights_that_do_not_fit_the_config(saved):
    _, path = saved
    (path / "config.json").write_text(json.dumps(CFG.model_dump() | {"ffn_dim": 64}))
    with pytest.raises(CheckpointError, match=r"do not fit the config.*\(32, 16\) vs model \(64, 16\)"):
        load_checkpoint(path)
    (path / "config.json").write_text(json.dumps(CFG.model_dump() | {"decoder": {"layers": 2}}))
    with pytest.raises(CheckpointError, match="decoder.layers=2 but the weights hold 1 decoder layers"):
        load_checkpoint(path)


def test_corrupt_tokenizer(saved):
    _, path = saved
    (path / "tokenizer.json").write_text("{}")
    with pytest.raises(CheckpointError, match="corrupt tokenizer"):
        load_checkpoint(path)


def test_loading_never_unpickles(saved, monkeypatch):
    _, path = saved

    def forbidden(*args, **kwargs):
        raise AssertionError("torch.load must not be used to read model weights")

    monkeypatch.setattr(torch, "load", forbidden)
    load_checkpoint(path)
