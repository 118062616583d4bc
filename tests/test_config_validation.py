"""Bad config values are refused once, when the config loads: one line naming the key, exit 2 (issue 17).

Each case here was accepted (or crashed with a traceback) before: ``heads=0`` divided by zero,
``kv_heads=0`` silently meant full multi-head attention, ``rope_base=0``/``lr=inf`` trained to NaN
and exited 0, ``config check`` accepted windows that training rejected.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hybridformer.config import BPE_MIN_VOCAB, ExperimentConfig, ModelConfig, load_config, parse_config
from hybridformer.errors import ConfigError
from tests.conftest import assert_one_line_error, run_entry, stand_in_overrides

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
RECIPE = CONFIGS / "multi30k-small.yaml"


@pytest.mark.parametrize("override, words", [
    ("heads=0", ["heads", "greater than or equal to 1"]),
    ("kv_heads=0", ["kv_heads", "greater than or equal to 1"]),
    ("encoder.attention={name: sliding_window, window: abc}", ["encoder.attention", "window", "integer"]),
    ("encoder.attention={name: sliding_window, window: 0}", ["encoder.attention", "window must be >= 1"]),
    ("decoder.attention={name: sliding_window, window: -5}", ["decoder.attention", "window must be >= 1"]),
    ("t5_buckets=0", ["t5_buckets"]),
    ("rope_base=0", ["rope_base", "greater than 1"]),
    ("dropout=.nan", ["dropout", "finite"]),
])
def test_config_check_refuses_bad_model_values(override, words, in_process):
    assert_one_line_error(in_process("config", "check", "--set", override), 2, *words)


@pytest.mark.parametrize("override, words", [
    ("train.betas=[2, -1]", ["train.betas.0", "less than 1"]),
    ("train.device=tpu", ["train.device", "cuda"]),
    ("train.lr=.inf", ["train.lr", "finite"]),
    ("data.vocab_size=1", ["data.vocab_size", str(BPE_MIN_VOCAB)]),
])
def test_config_check_refuses_bad_recipe_values(override, words, in_process):
    assert_one_line_error(in_process("config", "check", RECIPE, "--set", override), 2, *words)


def test_config_check_accepts_every_shipped_recipe(tmp_path, in_process):
    """In-process, so 13 recipes cost one torch import (the console script itself: tests/cli/test_config_cmd.py)."""
    for recipe in sorted(CONFIGS.glob("*.yaml")):
        overrides = stand_in_overrides(recipe, tmp_path / recipe.stem)
        result = in_process("config", "check", recipe, *(arg for o in overrides for arg in ("--set", o)))
        assert result.returncode == 0, (recipe, result.stderr)
        assert '"train"' in result.stdout and '"model"' in result.stdout
        if overrides:  # a fine-tune before its conversion: one line naming the key and the missing checkpoint
            missing = in_process("config", "check", recipe, "--set", f"train.init_from={tmp_path}/not-converted")
            assert_one_line_error(missing, 2, "train.init_from", "not-converted", "not a checkpoint directory")


def test_binary_and_non_utf8_yaml_are_one_line(tmp_path):
    (tmp_path / "latin1.yaml").write_bytes("heads: 4 # caf\xe9\n".encode("latin-1"))
    assert_one_line_error(run_entry("config", "check", tmp_path / "latin1.yaml"), 2, "latin1.yaml:1", "UTF-8")
    (tmp_path / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    assert_one_line_error(run_entry("config", "check", tmp_path / "binary.yaml"), 2, "binary.yaml")


def test_billion_laughs_message_stays_short(tmp_path):
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    (tmp_path / "lol.yaml").write_text("\n".join(lines) + "\nheads: *i\n")
    err = assert_one_line_error(run_entry("config", "check", tmp_path / "lol.yaml"), 2, "heads")
    assert len(err) < 4000


# ----------------------------------------------------------------------------- in process: the same rules via the API


@pytest.mark.parametrize("data, words", [
    ({"train": {"seed": 2**70}}, ["train.seed"]),
    ({"train": {"seed": -1}}, ["train.seed"]),
    ({"train": {"adam_eps": 0}}, ["train.adam_eps"]),
    ({"data": {"tokenizer_kind": "char", "vocab_size": 1}}, ["data.vocab_size", "261"]),
    ({"model": {"eos_id": 50, "vocab_size": 40}}, ["eos_id=50", "vocab_size=40"]),
    ({"model": {"t5_buckets": 32, "t5_max_distance": 8}}, ["t5_max_distance"]),
    ({"model": {"encoder": {"attention": {"name": "performer", "feature_dim": 2.5}}}}, ["feature_dim"]),
    ({"model": {"encoder": {"attention": {"name": "chunked", "chunk_size": ".inf"}}}}, ["chunk_size"]),
])
def test_experiment_values_are_refused_with_the_key_path(data, words):
    with pytest.raises(ConfigError) as info:
        parse_config(ExperimentConfig, data)
    for word in words:
        assert word in str(info.value)


def test_valid_values_still_pass_and_are_coerced():
    cfg = parse_config(ModelConfig, {"encoder": {"attention": {"name": "sliding_window", "window": "64"}}})
    assert cfg.encoder.attention.options == {"window": 64}
    assert parse_config(ExperimentConfig, {"train": {"device": "cuda:1", "seed": 2**32 - 1}}).train.device == "cuda:1"
    assert load_config(CONFIGS / "shakespeare-char.yaml", [], ExperimentConfig).data.tokenizer_kind == "char"


def test_bpe_minimum_matches_the_tokenizer():
    from hybridformer.data.tokenizer import RESERVED

    assert BPE_MIN_VOCAB == RESERVED + 1


def test_loss_chunk_on_a_torch_without_linear_cross_entropy_is_one_line(monkeypatch):
    import torch

    monkeypatch.delattr(torch.nn.functional, "linear_cross_entropy")
    with pytest.raises(ConfigError, match=r"train.loss_chunk needs torch >= 2.13") as err:
        parse_config(ExperimentConfig, {"train": {"loss_chunk": 256}})
    assert "\n" not in str(err.value)
