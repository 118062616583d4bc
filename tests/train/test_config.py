from __future__ import annotations

import pytest

from hybridformer.config import ExperimentConfig, load_config
from hybridformer.errors import ConfigError


@pytest.mark.parametrize("override, message", [
    ("train.lr=-1", r"train\.lr: Input should be greater than 0"),
    ("train.lrr=1", r"train\.lrr: unknown key; allowed keys: .*\blr\b"),
    ("data.max_tokens=0", r"data\.max_tokens"),
    ("train.schedule=step", r"train\.schedule"),
    ("model.arch=encoder_classifier", r"data\.format: an encoder_classifier trains on labeled documents"),
])
def test_errors_name_the_key_path(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override], ExperimentConfig)


def test_yaml_recipe_with_override(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("model: {arch: decoder_lm, d_model: 64}\ntrain: {lr: 0.01}\n")
    cfg = load_config(path, ["train.max_steps=7", "data.block_size=32"], ExperimentConfig)
    assert (cfg.model.arch, cfg.model.d_model, cfg.train.lr, cfg.train.max_steps, cfg.data.block_size) == (
        "decoder_lm", 64, 0.01, 7, 32)
