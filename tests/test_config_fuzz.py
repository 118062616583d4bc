"""Seeded random mutations of a valid recipe never reach a traceback in ``config check`` or ``train`` (issue 17).

Each mutation changes one key of a tiny, valid recipe: a value of another type or out of range
(0, -1, NaN, inf, a string, a list, null ...), a missing section or key, or an unknown key. The
config check either accepts it or raises one of the project's errors (one line, exit 2 in the CLI);
an accepted recipe that is cheap to run (at most 2 steps, a small model) must then train, or stop
with one of those errors. Anything else (ZeroDivisionError, a torch RuntimeError ...) fails the test.

CI runs 30 mutations and trains 5 of the accepted ones;
``HYBRIDFORMER_FUZZ=500 HYBRIDFORMER_FUZZ_SEED=2 pytest tests/test_config_fuzz.py -s`` runs
more (and prints how many were trained and refused).
"""

from __future__ import annotations

import copy
import math
import os
import random
from typing import Any

import pytest
import torch
import yaml

from hybridformer import train
from hybridformer.cli.config_cmd import check
from hybridformer.config import ExperimentConfig, parse_config
from hybridformer.errors import HybridformerError

MUTATIONS = int(os.environ.get("HYBRIDFORMER_FUZZ", "30"))
SEED = int(os.environ.get("HYBRIDFORMER_FUZZ_SEED", "17"))
MAX_TRAINED = int(os.environ.get("HYBRIDFORMER_FUZZ_TRAIN", "5" if MUTATIONS <= 30 else str(MUTATIONS)))
BASE: dict[str, Any] = {
    "model": {"arch": "encoder_decoder", "d_model": 16, "heads": 2, "ffn_dim": 32, "dropout": 0.0,
              "position": "sinusoidal", "encoder": {"layers": 1, "attention": {"name": "full"}},
              "decoder": {"layers": 1}},
    "data": {"builtin": "reverse", "builtin_train": 64, "builtin_valid": 8, "max_tokens": 512},
    "train": {"max_steps": 2, "eval_every": 2, "log_every": 1, "warmup_steps": 0, "lr": 0.001, "seed": 1},
}
# keys that may be mutated, beyond those in BASE (a value is given so the key can be added)
EXTRA_KEYS = ["model.kv_heads", "model.rope_base", "model.t5_buckets", "model.t5_max_distance", "model.activation",
              "model.norm", "model.max_positions", "model.pad_id", "model.eos_id", "model.encoder.layer",
              "model.encoder.attention.window", "model.encoder.attention.chunk_size", "model.decoder.attention",
              "model.encoder.conv.kernel_size", "model.residual", "model.norm_placement", "model.head_dim",
              "data.vocab_size", "data.tokenizer_kind", "data.max_src_len", "data.block_size", "train.betas",
              "train.device", "train.schedule", "train.accumulate", "train.label_smoothing", "train.clip_norm",
              "train.min_lr", "train.adam_eps", "train.ema_decay", "train.precision", "train.keep_last"]
VALUES: list[Any] = [0, -1, -5, 1, 2, 3, 7, 64, 2**31, 2**70, 0.5, 1.5, -0.5, math.nan, math.inf, -math.inf, "abc",
                     "", "full", "rope", "alibi", "t5", "sliding_window", "linear", "gelu", "swiglu", "rmsnorm",
                     "conformer", "post", "deepnet", "cpu", "tpu", "cosine", "char", "bpe", True, False, None, [], {},
                     [2, -1], [0.9, 0.99], {"name": "sliding_window", "window": 0},
                     {"name": "performer", "feature_dim": "x"}, "\x00\xff", "x" * 10000]


def _paths(node: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key, value in node.items():
        out.append(prefix + key)
        if isinstance(value, dict):
            out += _paths(value, f"{prefix}{key}.")
    return out


def mutate(rng: random.Random) -> tuple[dict[str, Any], str]:
    """One seeded mutation of BASE and a description of it."""
    cfg = copy.deepcopy(BASE)
    kind = rng.choice(["value", "value", "value", "remove", "unknown"])
    path = rng.choice(_paths(BASE) + EXTRA_KEYS)
    *parents, last = path.split(".")
    node = cfg
    for part in parents:
        node = node.setdefault(part, {}) if isinstance(node, dict) else node
        if not isinstance(node, dict):
            return cfg, f"{path}: parent is a value (unchanged)"
    if kind == "remove":
        node.pop(last, None)
        return cfg, f"remove {path}"
    if kind == "unknown":
        node[f"{last}_typo"] = rng.choice(VALUES)
        return cfg, f"unknown key {path}_typo"
    node[last] = rng.choice(VALUES)
    return cfg, f"{path}={node[last]!r:.40}"


def _cheap(cfg: ExperimentConfig) -> bool:
    """Small enough to train in a test: the fuzz looks for crashes, not for out-of-memory."""
    from hybridformer.models import build_model

    with torch.device("meta"):
        params = sum(p.numel() for p in build_model(cfg.model).parameters())
    data, t = cfg.data, cfg.train
    return (params < 2_000_000 and t.max_steps <= 2 and t.accumulate <= 4 and data.builtin_train <= 200
            and data.builtin_valid <= 50 and t.device in ("auto", "cpu") and t.eval_bleu <= 8)


def test_mutated_configs_never_trace_back(tmp_path, one_thread):
    rng = random.Random(SEED)
    trained = refused = 0
    for number in range(MUTATIONS):
        data, what = mutate(rng)
        recipe = tmp_path / f"m{number}.yaml"
        recipe.write_text(yaml.safe_dump(data, allow_unicode=True))
        try:
            check(recipe, [])
            cfg = parse_config(ExperimentConfig, data)
        except HybridformerError as exc:
            assert "\n" not in str(exc) and len(str(exc)) < 4000, (what, str(exc)[:500])
            refused += 1
            continue
        except Exception as exc:  # noqa: BLE001 - the point: nothing else may escape
            pytest.fail(f"config check traced back on mutation #{number} ({what}): {type(exc).__name__}: {exc}")
        if trained >= MAX_TRAINED or not _cheap(cfg):
            continue
        try:
            train(cfg, tmp_path / f"run{number}", progress=False)
            trained += 1
        except HybridformerError:
            refused += 1
        except Exception as exc:  # noqa: BLE001
            pytest.fail(f"train traced back on mutation #{number} ({what}): {type(exc).__name__}: {exc}")
    print(f"fuzz: {MUTATIONS} mutations (seed {SEED}): {trained} trained, {refused} refused with one line")
    assert refused > 0 and trained > 0  # the mutations exercise both paths
