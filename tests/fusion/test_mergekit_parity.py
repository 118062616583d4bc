"""Our merge methods against mergekit's own functions (mergekit 0.1.5) on the same tensors, within 1e-6.

mergekit is the reference implementation people merge with. DARE's random mask is drawn the way
mergekit draws it (``torch.bernoulli`` on the seeded global generator, model by model) and handed to our
rescale/combine, so the comparison is of the arithmetic. Conventions that differ are options
(``rescale="l1"``, ``combine="ties_sum"``), documented in docs/fusion.md.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("mergekit")

from mergekit.merge_methods.base import TensorBatch, TensorGroup  # noqa: E402
from mergekit.merge_methods.linear import linear_merge  # noqa: E402
from mergekit.merge_methods.registry import get  # noqa: E402
from mergekit.merge_methods.slerp import slerp as mk_slerp  # noqa: E402

from hybridformer.fusion.merge.base import MergeOptions  # noqa: E402
from hybridformer.fusion.merge.dare import Dare, DareOptions, combine, rescale_kept  # noqa: E402
from hybridformer.fusion.merge.linear import Linear  # noqa: E402
from hybridformer.fusion.merge.slerp import Slerp, SlerpOptions  # noqa: E402
from hybridformer.fusion.merge.task_arithmetic import TaskArithmetic  # noqa: E402
from hybridformer.fusion.merge.ties import Ties, TiesOptions  # noqa: E402

TOL = 1e-6
WEIGHTS = (0.7, 0.4, 1.1)


@pytest.fixture
def tensors() -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A base and three fine-tunes of a (13, 17) weight: odd sizes so ⌊density·n⌋ ≠ round(density·n)."""
    generator = torch.Generator().manual_seed(7)
    base = torch.randn(13, 17, generator=generator)
    return base, [base + 0.1 * torch.randn(13, 17, generator=generator) for _ in WEIGHTS]


def gta(method: str, base, models, weights, **shared):
    """mergekit's generalized task arithmetic (``ties``, ``task_arithmetic``, ``dare_*``) on one tensor."""
    group = TensorGroup.from_tensors([base, *models], base_index=0)
    ids = range(1, len(models) + 1)
    params = {"weight": dict(zip(ids, weights, strict=True)),
              "density": dict.fromkeys(ids, shared.pop("density", 1.0)),
              "int8_mask": False, "lambda": 1.0, **shared}
    return get(method).merge_group(group, **params)


def close(ours: torch.Tensor, theirs: torch.Tensor) -> bool:
    return (ours.float() - theirs.float()).abs().max().item() <= TOL


def test_linear(tensors) -> None:
    _, models = tensors
    theirs = linear_merge.implementation(TensorBatch([m[None] for m in models]), weight=torch.tensor([WEIGHTS]),
                                         normalize=True)[0]
    ours = Linear().merge("w", [m.clone() for m in models], None, MergeOptions(weights=WEIGHTS))
    assert close(ours, theirs)


@pytest.mark.parametrize("t", [0.0, 0.3, 0.5, 0.9])
def test_slerp(tensors, t: float) -> None:
    _, (a, b, _) = tensors
    for first, second in ((a, b), (a, -0.5 * a + 0.01 * b), (a, 2 * a)):  # generic, obtuse, parallel (lerp)
        theirs = mk_slerp(torch.tensor([t]), first[None], second[None])[0]
        ours = Slerp().merge("w", [first, second], None, SlerpOptions(weights=(1.0, 1.0), t=t))
        assert close(ours, theirs)


def test_task_arithmetic(tensors) -> None:
    base, models = tensors
    theirs = gta("task_arithmetic", base, models, WEIGHTS, normalize=False, rescale=False)
    assert close(TaskArithmetic().merge("w", models, base, MergeOptions(weights=WEIGHTS)), theirs)


@pytest.mark.parametrize("density", [0.2, 0.41, 1.0])  # 0.41 · 221 = 90.6: mergekit keeps 90
def test_ties(tensors, density: float) -> None:
    base, models = tensors
    theirs = gta("ties", base, models, WEIGHTS, density=density, normalize=True, rescale=False)
    assert close(Ties().merge("w", models, base, TiesOptions(weights=WEIGHTS, density=density)), theirs)


def mergekit_masks(deltas: list[torch.Tensor], density: float, seed: int) -> list[torch.Tensor]:
    """The keep masks mergekit's ``bernoulli`` draws after ``torch.manual_seed(seed)``, model by model."""
    torch.manual_seed(seed)
    return [torch.bernoulli(torch.full_like(d, density, dtype=torch.float32)).bool() for d in deltas]


@pytest.mark.parametrize(("method", "how", "normalize"), [
    ("dare_linear", "linear", False), ("dare_ties", "ties_sum", False), ("dare_ties", "ties", True)])
def test_dare_with_mergekit_masks(tensors, method: str, how: str, normalize: bool) -> None:
    base, models = tensors
    density, seed = 0.4, 3
    deltas = [m - base for m in models]
    masks = mergekit_masks(deltas, density, seed)
    torch.manual_seed(seed)
    theirs = gta(method, base, models, WEIGHTS, density=density, normalize=normalize, rescale=True)
    ours = combine(base, [rescale_kept(d, k, density, "l1") for d, k in zip(deltas, masks, strict=True)],
                   WEIGHTS, how)
    assert close(ours, theirs)


def test_dare_rescale_conventions_differ_only_in_scale(tensors) -> None:
    """The paper divides survivors by density (unbiased); mergekit keeps each task vector's L1 norm."""
    base, models = tensors
    delta = models[0] - base
    keep = torch.rand(delta.shape, generator=torch.Generator().manual_seed(0)) < 0.3
    paper, l1 = rescale_kept(delta, keep, 0.3, "density"), rescale_kept(delta, keep, 0.3, "l1")
    assert torch.allclose(paper / 0.3 ** -1, delta * keep)
    assert torch.allclose(l1.abs().sum(), delta.abs().sum())
    assert torch.allclose(l1 / (delta.abs().sum() / (delta * keep).abs().sum()), delta * keep)


def test_dare_options_are_seeded_and_checked(tensors) -> None:
    base, models = tensors
    options = DareOptions(weights=WEIGHTS, density=0.5, seed=1, combine="ties_sum", rescale="l1")
    Dare().check(len(models), options)
    first = Dare().merge("w", models, base, options)
    assert torch.equal(first, Dare().merge("w", models, base, options))
    from hybridformer.errors import ConfigError

    with pytest.raises(ConfigError, match="rescale"):
        Dare().check(3, DareOptions(weights=WEIGHTS, rescale="l2"))
