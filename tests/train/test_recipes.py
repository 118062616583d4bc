"""The shipped recipes load, and those with a cool-down keep exactly the checkpoints `average --last 5` should take."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybridformer.config import ExperimentConfig, load_config
from hybridformer.train.schedules import build_schedule
from tests.conftest import stand_in_overrides

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_recipe_loads_and_averages_the_cooldown(path, tmp_path):
    t = load_config(path, stand_in_overrides(path, tmp_path), ExperimentConfig).train
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
