"""``hybridize`` (LoLCATs) on a tiny converted Llama: the transfer loss falls, the result is an ordinary checkpoint
that decodes from its flat state exactly as its full forward, resume continues the run, and the CLI runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from conftest import assert_one_line_error, run_entry

from hybridformer import hybridize, load_checkpoint
from hybridformer.cache import DecodingCache, WindowLinearState
from hybridformer.errors import ConfigError
from hybridformer.hybridize import STATE, HybridizeOptions

sys.path.insert(0, str(Path(__file__).parent))
from interop.hf_tiny import converted_tiny  # noqa: E402

TEXT = ["the cat sat on the mat and looked at the dog", "a dog ran in the park after the red ball",
        "we read a good book about the sea and the old ships", "the bird sang a song in the tall green tree"]
FAST = dict(window=4, feature_dim=8, seq_len=24, save_every=3)


@pytest.fixture(scope="module")
def llama(tmp_path_factory) -> Path:
    return converted_tiny(tmp_path_factory.mktemp("hybridize"), TEXT)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("text") / "text.txt"
    path.write_text("\n".join(TEXT * 5))
    return path


def test_transfer_loss_falls_and_the_result_decodes_like_its_forward(llama, tmp_path):
    text = tmp_path / "one.txt"
    text.write_text(" ".join(TEXT))
    tokens = len(load_checkpoint(llama).tokenizer.encode(" ".join(TEXT), add_special_tokens=False).ids)
    # a window of all tokens but one: every step sees the same text, so the losses compare
    options = HybridizeOptions(**FAST | {"seq_len": tokens - 1}, transfer_steps=12, finetune_steps=2, transfer_lr=3e-2)
    out = hybridize(llama, tmp_path / "hybrid", options=options, data=[text])
    meta = json.loads((out / "meta.json").read_text())["hybridize"]
    losses = meta["losses"]["transfer"]
    assert losses["steps"] == 12 and losses["last"] < 0.7 * losses["first"]
    assert meta["losses"]["finetune"]["steps"] == 2 and meta["cpu_seconds"] > 0
    assert meta["decoding_memory"]["kv_tokens_per_layer"] == [4, 4]  # the window; the linear state is fixed
    assert not (out / STATE).exists()  # finished: an ordinary checkpoint

    ckpt = load_checkpoint(out)  # round trip: config names the kernel, weights hold its maps
    kinds = {ckpt.config.decoder.attention_of(i).name for i in range(ckpt.config.decoder.layers)}
    assert kinds == {"window_linear"}
    model = ckpt.model.eval()
    ids = torch.randint(3, 90, (2, 19))
    with torch.no_grad():
        full = model(ids)
        cache = DecodingCache()
        prompt = model.decode(ids[:, :7], cache=cache)
        steps = [model.decode(ids[:, i:i + 1], cache=cache, offset=i) for i in range(7, 19)]
    torch.testing.assert_close(torch.cat([prompt, *steps], 1), full, atol=1e-5, rtol=1e-4)
    states = [s for s in cache.values() if isinstance(s, WindowLinearState)]
    assert len(states) == 2 and all(s.keys.shape[2] == 4 for s in states)  # window only: flat memory
    trained = ckpt.model.decoder.layers[0].sublayers[0].body.kernel
    assert not torch.equal(trained.q_map, torch.eye(16, 8).expand_as(trained.q_map))


def test_resume_continues_the_interrupted_run_exactly(llama, data, tmp_path):
    options = HybridizeOptions(**FAST, transfer_steps=6, finetune_steps=3)
    whole = hybridize(llama, tmp_path / "whole", options=options, data=[data])

    def killed_at_step_four(stage, step, steps, loss):  # after the save at step 3 (save_every=3)
        if stage == "transfer" and step == 4:
            raise KeyboardInterrupt

    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        hybridize(llama, run, options=options, data=[data], progress=killed_at_step_four)
    assert (run / STATE).is_file()
    with pytest.raises(ConfigError, match="started with seq_len=24"):
        hybridize(llama, run, options=HybridizeOptions(**FAST | {"seq_len": 20}), data=[data], resume=True)
    resumed = hybridize(llama, run, options=options, data=[data], resume=True)
    assert not (run / STATE).exists()
    a, b = load_checkpoint(whole).model.state_dict(), load_checkpoint(resumed).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_cli_hybridizes_and_refuses_bad_input(llama, data, tmp_path):
    out = tmp_path / "cli"
    result = run_entry("hybridize", llama, "--out", out, "--data", data, "--window", "4", "--feature-dim", "8",
                       "--seq-len", "24", "--transfer-steps", "3", "--finetune-steps", "1", timeout=300)
    assert result.returncode == 0, result.stderr
    assert "transfer loss" in result.stdout and "CPU seconds" in result.stdout
    assert "decoding memory" in result.stdout
    assert "transfer step 3/3" in result.stderr  # progress, as lines when stderr is not a terminal
    again = run_entry("hybridize", llama, "--out", out, "--data", data, timeout=120)
    assert_one_line_error(again, 2, "--overwrite")
    bad = run_entry("hybridize", llama, "--out", tmp_path / "bad", "--window", "0", timeout=120)
    assert_one_line_error(bad, 2, "--window")
    nothing = run_entry("hybridize", llama, "--out", tmp_path / "none", "--resume", timeout=120)
    assert_one_line_error(nothing, 2, "--resume")
