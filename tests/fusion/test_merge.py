"""merge_checkpoints end to end: streaming over safetensors, the output directory, and every error."""

from __future__ import annotations

import json

import pytest
import torch
from fusion.fusion_helpers import tiny_config, tokenizer

from hybridformer import CheckpointError, ConfigError, load_checkpoint, merge_checkpoints
from hybridformer.checkpoint import load_weights


def test_linear_merge_matches_the_hand_computed_weighted_mean(ckpt, tmp_path):
    a, b = ckpt("a", seed=1), ckpt("b", seed=2)
    out = merge_checkpoints([a, b], "linear", tmp_path / "soup", weights=[1, 3])
    wa, wb, merged = load_weights(a), load_weights(b), load_weights(out)
    assert merged.keys() == wa.keys()
    for name in wa:
        assert torch.allclose(merged[name], 0.25 * wa[name] + 0.75 * wb[name], atol=1e-7), name
    endpoint = load_weights(merge_checkpoints([a, b], "linear", tmp_path / "first", weights=[1, 0]))
    assert all(torch.equal(endpoint[n], wa[n]) for n in wa)


def test_output_is_a_loadable_checkpoint_with_tokenizer_and_provenance(ckpt, tmp_path):
    a, b = ckpt("a", seed=1), ckpt("b", seed=2)
    out = merge_checkpoints([a, b], "slerp", tmp_path / "s", t=0.0)
    loaded = load_checkpoint(out)
    assert loaded.config == load_checkpoint(a).config
    assert loaded.tokenizer.get_vocab() == tokenizer().get_vocab()
    meta = json.loads((out / "meta.json").read_text())["fusion"]
    assert meta["method"] == "slerp" and meta["inputs"] == [str(a), str(b)] and meta["t"] == 0.0
    wa, merged = load_weights(a), load_weights(out)
    assert all(torch.equal(merged[n], wa[n]) for n in wa)  # t = 0 is the first checkpoint


def test_base_methods_stream_the_base_separately(ckpt, tmp_path):
    base, m1, m2 = ckpt("base", seed=0), ckpt("m1", seed=1), ckpt("m2", seed=2)
    halves = merge_checkpoints([m1, m2], "task_arithmetic", tmp_path / "ta", base=base, weights=[0.5, 0.5])
    mean = merge_checkpoints([m1, m2], "linear", tmp_path / "lin")
    wh, wm = load_weights(halves), load_weights(mean)
    assert all(torch.allclose(wh[n], wm[n], atol=1e-6) for n in wm)  # base + ½Σ(m - base) = mean
    for method in ("ties", "dare"):
        single = load_weights(merge_checkpoints([m1], method, tmp_path / method, base=base, density=1.0))
        w1 = load_weights(m1)
        assert all(torch.allclose(single[n], w1[n], atol=1e-6) for n in w1), method  # one model, nothing dropped


def test_mismatched_shapes_list_the_first_mismatching_tensors(ckpt, tmp_path):
    a = ckpt("a")
    b = ckpt("b", cfg=tiny_config(ffn_dim=32))
    with pytest.raises(CheckpointError) as err:
        merge_checkpoints([a, b], "linear", tmp_path / "out")
    message = str(err.value)
    assert str(a) in message and str(b) in message and "mismatching tensors" in message
    assert "linear1.weight F32[16, 8] vs F32[32, 8]" in message and "more)" in message
    assert not (tmp_path / "out").exists()


def test_same_shapes_but_different_architecture_is_an_error(ckpt, tmp_path):
    a, b = ckpt("a"), ckpt("b", cfg=tiny_config(position="rope"))
    with pytest.raises(CheckpointError, match="different architectures.*position: 'sinusoidal' vs 'rope'"):
        merge_checkpoints([a, b], "linear", tmp_path / "out")


def test_dropout_alone_does_not_block_a_merge(ckpt, tmp_path):
    a, b = ckpt("a"), ckpt("b", cfg=tiny_config(dropout=0.3))
    merge_checkpoints([a, b], "linear", tmp_path / "out")


def test_different_vocabularies_name_both_checkpoints(ckpt, tmp_path):
    words = ["<pad>", "<s>", "</s>", "<unk>"] + [f"x{i}" for i in range(12)]
    a, b = ckpt("a"), ckpt("b", tok=tokenizer(words))
    with pytest.raises(CheckpointError, match=f"{a} and {b} have different vocabularies.*id 4: 'w0' vs 'x0'"):
        merge_checkpoints([a, b], "linear", tmp_path / "out")


@pytest.mark.parametrize("kwargs, message", [
    (dict(method="slerp", paths=3), "exactly 2"),
    (dict(method="ties"), "--base"),
    (dict(method="linear", base=True), "does not use a base"),
    (dict(method="linear", density=0.5), "does not use density"),
    (dict(method="ties", base=True, density=1.5), r"density must be in \(0, 1\]"),
    (dict(method="linear", weights=[1.0]), "1 weights for 2 checkpoints"),
    (dict(method="slerp", weights=[1.0, 2.0]), "not weights"),
    (dict(method="dare", base=True, combine="mean"), "combine must be"),
    (dict(method="soup"), "unknown merge method 'soup'; allowed: linear, slerp"),
])
def test_bad_options_are_config_errors(ckpt, tmp_path, kwargs, message):
    paths = [ckpt(f"m{i}") for i in range(kwargs.pop("paths", 2))]
    if kwargs.pop("base", False):
        kwargs["base"] = paths[0]
    method = kwargs.pop("method")
    with pytest.raises(ConfigError, match=message):
        merge_checkpoints(paths, method, tmp_path / "out", **kwargs)


def test_merged_file_keeps_the_tied_weight_metadata(ckpt, tmp_path):
    from safetensors import safe_open

    a, b = ckpt("a", seed=1), ckpt("b", seed=2)
    out = merge_checkpoints([a, b], "linear", tmp_path / "out")
    with safe_open(str(a / "model.safetensors"), "pt") as fa, safe_open(str(out / "model.safetensors"), "pt") as fo:
        assert fo.metadata() == fa.metadata() and "tgt_embed.weight" in fo.metadata()


def test_integer_tensors_are_copied_when_equal_and_refused_when_not(ckpt, tmp_path):
    from safetensors.torch import save_file

    a, b = ckpt("a", seed=1), ckpt("b", seed=2)
    for path, steps in ((a, 7), (b, 7)):
        weights = load_weights(path)
        save_file({**weights, "num_updates": torch.tensor([steps])}, str(path / "model.safetensors"))
    merged = load_weights(merge_checkpoints([a, b], "linear", tmp_path / "out"))
    assert merged["num_updates"].dtype == torch.int64 and merged["num_updates"].tolist() == [7]
    save_file({**load_weights(b), "num_updates": torch.tensor([9])}, str(b / "model.safetensors"))
    with pytest.raises(CheckpointError, match="integer tensor num_updates differs"):
        merge_checkpoints([a, b], "linear", tmp_path / "out")
