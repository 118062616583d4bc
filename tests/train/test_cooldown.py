"""Cool-down schedules: their shape at chosen steps, and exact resume from inside the cool-down."""

from __future__ import annotations

import shutil

import pytest
import torch

from hybridformer import train
from hybridformer.checkpoint import load_weights
from hybridformer.config import ExperimentConfig, load_config
from hybridformer.errors import ConfigError
from hybridformer.fusion import last_checkpoints
from hybridformer.train import read_metrics
from hybridformer.train.schedules import build_schedule
from hybridformer.train.state import RunDir


def test_wsd_shapes_by_hand():
    # 10 warmup, stable to step 80, decay over the last 20 steps (0.2 * 100) from 1.0 to 0.1
    for shape, mid in (("linear", 0.55), ("cosine", 0.55), ("1-sqrt", 0.1 + 0.9 * (1 - 0.5 ** 0.5))):
        s = build_schedule("wsd", lr=1.0, warmup_steps=10, total_steps=100, min_lr=0.1, decay_fraction=0.2,
                           decay_shape=shape)
        assert [s(1), s(5), s(10)] == pytest.approx([0.1, 0.5, 1.0])
        assert s(11) == s(50) == s(80) == 1.0  # the stable phase
        assert s(90) == pytest.approx(mid)
        assert s(100) == pytest.approx(0.1) and s(120) == pytest.approx(0.1)
        assert all(s(t) >= s(t + 1) for t in range(10, 110))  # never rises after warmup
    quarter = {name: build_schedule("wsd", lr=1.0, warmup_steps=0, total_steps=100, decay_fraction=0.2,
                                    decay_shape=name)(85) for name in ("linear", "cosine", "1-sqrt")}
    assert quarter == pytest.approx({"linear": 0.75, "cosine": 0.5 * (1 + 2 ** -0.5), "1-sqrt": 0.5})


def test_wsd_default_fraction_and_cosine_ends_at_min_lr():
    s = build_schedule("wsd", lr=2.0, warmup_steps=0, total_steps=50)  # default: the last 20% (10 steps)
    assert s(40) == 2.0 and s(45) == pytest.approx(1.0) and s(50) == 0.0
    cos = build_schedule("cosine", lr=1.0, warmup_steps=5, total_steps=55, min_lr=0.05)
    assert cos(55) == pytest.approx(0.05) and cos(30) == pytest.approx(0.525)


def test_inverse_sqrt_cooldown_is_off_by_default():
    plain = build_schedule("inverse_sqrt", lr=1.0, warmup_steps=4, total_steps=100)
    cool = build_schedule("inverse_sqrt", lr=1.0, warmup_steps=4, total_steps=100, decay_fraction=0.25)
    assert [plain(t) for t in range(1, 101)][-1] == pytest.approx(0.2)  # sqrt(4/100): no cool-down
    assert [cool(t) for t in range(1, 76)] == [plain(t) for t in range(1, 76)]
    assert cool(100) == 0.0  # linear from sqrt(4/75) at step 75 down to min_lr at 100
    assert cool(90) == pytest.approx((4 / 75) ** 0.5 * (10 / 25))


def test_decay_options_are_checked():
    with pytest.raises(ConfigError, match="decay_fraction applies"):
        build_schedule("cosine", lr=1.0, warmup_steps=0, total_steps=10, decay_fraction=0.1)
    with pytest.raises(ConfigError, match="allowed: linear, cosine, 1-sqrt"):
        build_schedule("wsd", lr=1.0, warmup_steps=0, total_steps=10, decay_shape="square")
    with pytest.raises(ConfigError, match="decay_fraction applies"):
        load_config(None, ["train.schedule=cosine", "train.decay_fraction=0.2"], ExperimentConfig)


@pytest.mark.parametrize("overrides", [
    ["train.schedule=wsd", "train.decay_fraction=0.5", "train.decay_shape=1-sqrt", "train.min_lr=0.0003"],
    ["train.schedule=inverse_sqrt", "train.decay_fraction=0.5"],
])
def test_resume_inside_the_cooldown_is_exact(tmp_path, tiny_config, overrides):
    """12 steps straight vs killed after step 8 (the cool-down runs over steps 7-12) and resumed."""
    config = tiny_config("train.max_steps=12", "train.save_every=2", "train.keep_last=5", *overrides)
    full = train(config, tmp_path / "full")
    part = tmp_path / "part"
    train(tiny_config("train.max_steps=12", "train.save_every=2", "train.keep_last=5", *overrides), part)
    for step in (10, 12):  # as if killed right after writing step 8
        shutil.rmtree(RunDir(part).step_dir(step))
    resumed = train(config, part, resume=True)
    assert resumed.step == 12

    def curve(run):
        return {e["step"]: (e["loss"], e["lr"]) for e in read_metrics(run / "metrics.jsonl") if e["kind"] == "train"}

    assert curve(part) == curve(tmp_path / "full")
    lrs = [lr for _, lr in curve(part).values()]
    assert lrs[6] > lrs[-1] == pytest.approx(3e-4 if "train.min_lr=0.0003" in overrides else 0.0)
    a, b = load_weights(full.checkpoint), load_weights(resumed.checkpoint)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # average --last 5 takes the cool-down checkpoints (steps 4..12 kept; the last 3 lie in the cool-down)
    assert [p.name for p in last_checkpoints(part, 3)] == ["step-000008", "step-000010", "step-000012"]
