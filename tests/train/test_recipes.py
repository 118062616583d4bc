"""The shipped recipes load, and those with a cool-down keep exactly the checkpoints `average --last 5` should take."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybridformer.train.schedules import build_schedule
from hybridformer.train.setup import load_recipe
from tests.conftest import stand_in_overrides

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_recipe_loads_and_averages_the_cooldown(path, tmp_path):
    t = load_recipe(path, stand_in_overrides(path, tmp_path)).train
    if t.schedule != "wsd" or (t.save_every or t.eval_every) >= t.max_steps:
        return  # no cool-down, or only the final checkpoint is saved: nothing to average
    saved = [s for s in range(1, t.max_steps + 1) if s % (t.save_every or t.eval_every) == 0 or s == t.max_steps]
    kept = saved[-t.keep_last:]
    schedule = build_schedule(t.schedule, lr=t.lr, warmup_steps=t.warmup_steps, total_steps=t.max_steps,
                              min_lr=t.min_lr, decay_fraction=t.decay_fraction, decay_shape=t.decay_shape)
    assert t.keep_last >= 5, "README: hybridformer average --last 5 RUN_DIR"
    assert all(schedule(step) < t.lr for step in kept), f"{path.name}: a kept checkpoint precedes the cool-down"
    assert schedule(kept[0] - (t.save_every or t.eval_every)) == t.lr  # and no cool-down checkpoint is dropped


def test_recipes_exist():
    names = {p.stem for p in CONFIGS}
    assert {"multi30k-transformer", "multi30k-conformer", "shakespeare-char", "scitldr-summarization",
            "scitldr-smollm2"} <= names


HYBRIDS = sorted(p for p in CONFIGS if p.stem.startswith("shakespeare-hybrids-"))


def test_hybrid_recipes_have_about_equal_parameter_counts():
    from hybridformer import build_model

    assert {p.stem.removeprefix("shakespeare-hybrids-") for p in HYBRIDS} == {"transformer", "conformer", "lfm2",
                                                                              "mamba2"}
    counts = {}
    for path in HYBRIDS:
        model = load_recipe(path, ["model.vocab_size=65"]).model
        counts[path.stem] = sum(p.numel() for p in build_model(model).parameters())
    assert max(counts.values()) / min(counts.values()) < 1.1, counts


@pytest.mark.parametrize("path", HYBRIDS, ids=lambda p: p.stem)
def test_hybrid_recipe_trains_a_few_steps(path, tmp_path):
    from hybridformer import load_checkpoint, train
    from tests.conftest import TINY_TEXT

    text = tmp_path / "input.txt"
    text.write_text("\n".join(TINY_TEXT * 30) + "\n")
    overrides = [f"data.train_file={text}", "data.block_size=16", "data.max_tokens=64", "train.max_steps=2",
                 "train.warmup_steps=1", "train.eval_every=2", "train.save_every=2"]
    recipe = load_recipe(path, overrides)
    ckpt = load_checkpoint(train(recipe, tmp_path / "run").checkpoint)
    assert ckpt.config.decoder.layer_kinds() == recipe.model.decoder.layer_kinds()


def test_multi30k_shortconv_recipe_trains_a_few_steps(tmp_path):
    """The LFM2-style decoder recipe validates and trains 2 steps on tiny parallel text (the real data is not read)."""
    from hybridformer import load_checkpoint, train
    from tests.conftest import TINY_TEXT

    files = {}
    for side in ("src", "tgt"):
        files[side] = tmp_path / f"train.{side}"
        files[side].write_text("\n".join(TINY_TEXT * 4) + "\n")
    overrides = [f"data.{kind}_{side}={files[side]}" for kind in ("train", "valid") for side in ("src", "tgt")]
    overrides += ["data.vocab_size=300", "data.max_tokens=256", "train.max_steps=2", "train.warmup_steps=1",
                  "train.eval_every=2", "train.save_every=2", "train.precision=fp32", "model.d_model=32",
                  "model.ffn_dim=64", "model.heads=2"]
    recipe = load_recipe(Path(__file__).resolve().parents[2] / "configs" / "multi30k-shortconv.yaml", overrides)
    cfg = load_checkpoint(train(recipe, tmp_path / "run").checkpoint).config
    assert [cfg.decoder.layer_of(i) for i in range(3)] == ["shortconv", "shortconv", "transformer"]
