from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hybridformer.errors import ConfigError
from hybridformer.quantized import Int8WeightLinear
from hybridformer.train.losses import chunked_label_nll, label_smoothed_nll
from hybridformer.train.schedules import build_schedule


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_label_smoothing_matches_torch(eps):
    logits = torch.randn(3, 5, 11)
    target = torch.randint(1, 11, (3, 5))
    target[0, 3:] = 0  # padding
    loss, nll, count = label_smoothed_nll(logits, target, epsilon=eps, ignore_index=0)
    want = F.cross_entropy(logits.view(-1, 11), target.view(-1), ignore_index=0, label_smoothing=eps,
                           reduction="sum")
    torch.testing.assert_close(loss, want)
    torch.testing.assert_close(nll, F.cross_entropy(logits.view(-1, 11), target.view(-1), ignore_index=0,
                                                    reduction="sum"))
    assert count.item() == 13


def test_schedules_by_hand():
    inv = build_schedule("inverse_sqrt", lr=1.0, warmup_steps=4, total_steps=100)
    assert [inv(s) for s in (1, 2, 4)] == [0.25, 0.5, 1.0]
    assert inv(16) == pytest.approx(0.5)
    cos = build_schedule("cosine", lr=1.0, warmup_steps=10, total_steps=110, min_lr=0.1)
    assert cos(10) == 1.0 and cos(60) == pytest.approx(0.55) and cos(110) == pytest.approx(0.1)
    assert cos(500) == pytest.approx(0.1)
    lin = build_schedule("linear", lr=2.0, warmup_steps=0, total_steps=10)
    assert lin(5) == pytest.approx(1.0)
    assert build_schedule("constant", lr=3.0, warmup_steps=0, total_steps=1)(1000) == 3.0
    assert all(math.isfinite(inv(s)) for s in range(1, 50))
    with pytest.raises(ConfigError, match="allowed"):
        build_schedule("step", lr=1.0, warmup_steps=0, total_steps=1)


def test_chunked_loss_equals_the_whole_loss_and_its_gradients():
    torch.manual_seed(0)
    output = torch.nn.Linear(8, 13, bias=False)
    states = torch.randn(2, 7, 8, requires_grad=True)
    target = torch.randint(1, 13, (2, 7))
    target[1, 4:] = 0  # ignored
    grads = []
    for chunk in (None, 3):  # 14 positions: chunks of 3, 3, 3, 3, 2
        if chunk is None:
            sums = label_smoothed_nll(output(states), target, epsilon=0.1, ignore_index=0)
        else:
            sums = chunked_label_nll(states, output, target, chunk=chunk, epsilon=0.1, ignore_index=0)
        sums[0].backward()
        grads.append((sums, states.grad.clone(), output.weight.grad.clone()))
        states.grad, output.weight.grad = None, None
    (whole, *whole_grads), (chunked, *chunked_grads) = grads
    for a, b in zip([*whole, *whole_grads], [*chunked, *chunked_grads], strict=True):
        torch.testing.assert_close(a, b)


def test_chunked_loss_under_autocast_and_through_an_int8_output_layer():
    """bf16 autocast as training runs it; an int8 LoRA base's untied output layer multiplies by its dequantised
    weight. Both agree with the unchunked loss to bf16's precision."""
    torch.manual_seed(0)
    target = torch.randint(1, 13, (2, 7))
    target[0, :2] = 0
    for output in (torch.nn.Linear(8, 13), Int8WeightLinear.from_linear(torch.nn.Linear(8, 13))):
        states = torch.randn(2, 7, 8, requires_grad=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            whole = label_smoothed_nll(output(states), target, epsilon=0.1, ignore_index=0)
            chunked = chunked_label_nll(states, output, target, chunk=4, epsilon=0.1, ignore_index=0)
        grads = [torch.autograd.grad(sums[0], states)[0] for sums in (whole, chunked)]
        for a, b in zip([*whole, grads[0]], [*chunked, grads[1]], strict=True):
            torch.testing.assert_close(a.float(), b.float(), rtol=2e-2, atol=2e-3)
