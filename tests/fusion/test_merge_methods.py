"""Every merge method against hand-computed results on tiny tensors (float64, as the merge loop runs them)."""

from __future__ import annotations

import math

import pytest
import torch

from hybridformer.fusion.merge import METHODS
from hybridformer.fusion.merge.dare import drop_and_rescale, generator
from hybridformer.fusion.merge.ties import disjoint_mean, trim


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def merge(method: str, models, base=None, **options) -> torch.Tensor:
    opts = METHODS[method].options(weights=tuple(options.pop("weights", (1.0,) * len(models))), **options)
    return METHODS[method].merge("w", models, base, opts)


# --------------------------------------------------------------------------- linear


def test_linear_endpoints_equal_the_inputs():
    a, b = t(1.5, -2.0, 3.25), t(-7.0, 0.5, 11.0)
    assert torch.equal(merge("linear", [a, b], weights=(1, 0)), a)
    assert torch.equal(merge("linear", [a, b], weights=(0, 1)), b)


def test_linear_weighted_mean_by_hand():
    a, b = t(1.0, 2.0), t(3.0, 6.0)
    assert torch.equal(merge("linear", [a, b]), t(2.0, 4.0))
    assert torch.allclose(merge("linear", [a, b], weights=(3, 1)), t(1.5, 3.0))  # (3a + b) / 4


# --------------------------------------------------------------------------- slerp


def test_slerp_endpoints_equal_the_inputs():
    a, b = t(1.0, 2.0, -1.0), t(0.5, -3.0, 2.0)
    assert torch.equal(merge("slerp", [a, b], t=0.0), a)
    assert torch.equal(merge("slerp", [a, b], t=1.0), b)


def test_slerp_keeps_the_norm_of_orthogonal_vectors():
    a, b = t(2.0, 0.0), t(0.0, 2.0)
    mid = merge("slerp", [a, b], t=0.5)
    assert torch.allclose(mid, t(math.sqrt(2), math.sqrt(2)))  # norm 2 kept; lerp would give norm √2
    third = merge("slerp", [a, b], t=1 / 3)
    assert torch.allclose(third, t(2 * math.cos(math.pi / 6), 2 * math.sin(math.pi / 6)))  # 30° along the arc


def test_slerp_falls_back_to_lerp_for_parallel_and_zero_tensors():
    assert torch.allclose(merge("slerp", [t(1.0, 2.0), t(2.0, 4.0)], t=0.5), t(1.5, 3.0))
    assert torch.allclose(merge("slerp", [t(0.0, 0.0), t(2.0, 4.0)], t=0.25), t(0.5, 1.0))


# --------------------------------------------------------------------------- task arithmetic


def test_task_arithmetic_by_hand():
    base, m1, m2 = t(1, 1, 1), t(2, 1, 0), t(1, 3, 1)
    # base + 1·(1, 0, -1) + 0.5·(0, 2, 0)
    assert torch.equal(merge("task_arithmetic", [m1, m2], base, weights=(1.0, 0.5)), t(2, 2, 0))


# --------------------------------------------------------------------------- TIES


def test_ties_trim_keeps_the_largest_magnitudes():
    assert torch.equal(trim(t(0.1, -3.0, 2.0, -0.5), 0.5), t(0.0, -3.0, 2.0, 0.0))
    assert torch.equal(trim(t(0.1, -3.0, 2.0, -0.5), 0.1), t(0.0, -3.0, 0.0, 0.0))  # at least one entry


def test_ties_elect_and_disjoint_mean_by_hand():
    d1, d2, d3 = t(1, -2, 0, 3), t(2, 1, -1, -1), t(-1, -2, 0, 1)
    # column sums 2, -3, -1, 3 elect +, -, -, +; the agreeing entries are averaged
    assert torch.equal(disjoint_mean([d1, d2, d3], (1, 1, 1)), t(1.5, -2, -1, 2))
    # weights scale the vote and the mean: col0 3·1 - 2 > 0 -> only d1; col1 (3·-1 + 1·-1) / 4
    assert torch.equal(disjoint_mean([t(1, -1), t(-2, -1)], (3, 1)), t(1, -1))


def test_ties_full_merge_by_hand():
    base = t(1, 1, 1, 1)
    m1, m2 = base + t(4, 0.1, -1, 0.2), base + t(-3, 0.3, -2, -0.1)
    # trimmed to 50%: (4, 0, -1, 0) and (-3, 0, -2, 0); signs +, none, -, none
    assert torch.allclose(merge("ties", [m1, m2], base, density=0.5), base + t(4, 0, -1.5, 0))


# --------------------------------------------------------------------------- DARE


def test_dare_rescale_keeps_the_expected_value():
    delta = torch.full((20000,), 2.0, dtype=torch.float64)
    dropped = drop_and_rescale(delta, 0.25, generator(7, "w", 0))
    assert set(dropped.unique().tolist()) <= {0.0, 8.0}  # dropped, or rescaled by 1 / density
    assert abs(dropped.ne(0).double().mean().item() - 0.25) < 0.02
    assert abs(dropped.mean().item() - 2.0) < 0.08  # E[kept / density] = delta


def test_dare_is_seeded_per_tensor_and_model():
    delta = torch.ones(500, dtype=torch.float64)
    same = drop_and_rescale(delta, 0.5, generator(1, "w", 0))
    assert torch.equal(same, drop_and_rescale(delta, 0.5, generator(1, "w", 0)))
    for other in (generator(2, "w", 0), generator(1, "v", 0), generator(1, "w", 1)):
        assert not torch.equal(same, drop_and_rescale(delta, 0.5, other))


def test_dare_linear_is_task_arithmetic_on_dropped_deltas():
    base, m1, m2 = t(1, 1, 1), t(2, 1, 0), t(1, 3, 1)
    full = merge("dare", [m1, m2], base, weights=(1.0, 0.5), density=1.0)
    assert torch.equal(full, merge("task_arithmetic", [m1, m2], base, weights=(1.0, 0.5)))
    base = torch.zeros(4000, dtype=torch.float64)
    out = merge("dare", [base + 1.0], base, density=0.5, seed=3)
    assert set(out.unique().tolist()) == {0.0, 2.0}


def test_dare_ties_elects_signs_on_dropped_deltas():
    base = t(0, 0, 0, 0)
    m1, m2, m3 = t(1, -2, 0, 3), t(2, 1, -1, -1), t(-1, -2, 0, 1)
    out = merge("dare", [m1, m2, m3], base, density=1.0, combine="ties")
    assert torch.equal(out, t(1.5, -2, -1, 2))  # density 1: exactly the disjoint mean above
    big = torch.zeros(4000, dtype=torch.float64)
    dropped = merge("dare", [big + 1.0, big - 3.0], big, density=0.5, combine="ties", seed=5)
    # where both survive, -6 outvotes +2; where one survives it alone decides
    assert set(dropped.unique().tolist()) == {0.0, 2.0, -6.0}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_returns_the_input_when_models_equal_the_base(method):
    x = t(0.5, -1.0, 2.0)
    models = [x.clone(), x.clone()]
    base = x.clone() if METHODS[method].needs_base else None
    assert torch.allclose(merge(method, models, base), x)
