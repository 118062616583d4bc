"""Merging LoRA adapters of one base through their full updates ΔW = scale · B A: the merged weights equal the
ΔW combinations computed by hand, and ``peft``'s ``add_weighted_adapter`` gives the same model where it defines
the same operation (``cat`` = task arithmetic, ``ties_svd`` at full rank = TIES)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("peft")
pytest.importorskip("transformers")

from conftest import run_entry  # noqa: E402
from interop.hf_tiny import save_tiny  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from hybridformer import convert, load_checkpoint  # noqa: E402
from hybridformer.fusion import merge_adapters  # noqa: E402
from hybridformer.interop import export  # noqa: E402

TARGETS = ["q_proj", "v_proj", "o_proj", "down_proj"]


@pytest.fixture(scope="module")
def adapters(tmp_path_factory) -> tuple[Path, Path, list[Path]]:
    """(HF base folder, our converted base, two peft-made adapters with random factors)."""
    from peft import LoraConfig, get_peft_model

    root = tmp_path_factory.mktemp("adapters")
    torch.manual_seed(0)
    _, folder = save_tiny("llama", root / "hf")
    made = []
    for i, (rank, alpha) in enumerate([(2, 4), (3, 3)]):
        from transformers import AutoModelForCausalLM

        model = get_peft_model(AutoModelForCausalLM.from_pretrained(folder),
                               LoraConfig(r=rank, lora_alpha=alpha, target_modules=TARGETS, init_lora_weights=False))
        model.save_pretrained(root / f"adapter{i}")
        made.append(root / f"adapter{i}")
    return folder, convert(folder, root / "ours"), made


def hand_deltas(adapter: Path, rank: int, alpha: float) -> dict[str, torch.Tensor]:
    """HF weight name -> (alpha / rank) · B A, straight from the file."""
    tensors = load_file(adapter / "adapter_model.safetensors")
    deltas = {}
    for key, a in tensors.items():
        if key.endswith("lora_A.weight"):
            module = key.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
            deltas[f"{module}.weight"] = alpha / rank * tensors[key.replace("lora_A", "lora_B")] @ a
    return deltas


@pytest.mark.parametrize(("method", "weights", "options", "combine"), [
    ("task_arithmetic", [0.5, 2.0], {}, lambda w, d1, d2: w + 0.5 * d1 + 2.0 * d2),
    ("linear", [1.0, 3.0], {}, lambda w, d1, d2: w + (1.0 * d1 + 3.0 * d2) / 4.0),
    ("dare", [0.5, 2.0], {"density": 1.0}, lambda w, d1, d2: w + 0.5 * d1 + 2.0 * d2),  # nothing dropped
])
def test_merges_equal_hand_computed_combinations(adapters, tmp_path: Path, method, weights, options, combine) -> None:
    folder, base, (first, second) = adapters
    merge_adapters([first, second], method, tmp_path / "merged", base=base, weights=weights, **options)
    export(tmp_path / "merged", tmp_path / "hf", to="hf")
    original, merged = load_file(folder / "model.safetensors"), load_file(tmp_path / "hf" / "model.safetensors")
    d1, d2 = hand_deltas(first, 2, 4), hand_deltas(second, 3, 3)
    assert len(d1) == 2 * len(TARGETS)
    for name, weight in original.items():
        expected = combine(weight, d1[name], d2[name]) if name in d1 else weight
        assert torch.allclose(merged[name], expected, atol=1e-6), name


@pytest.mark.parametrize(("method", "options", "peft_options"), [
    ("task_arithmetic", {"weights": [0.5, 2.0]}, {"weights": [0.5, 2.0], "combination_type": "cat"}),
    ("ties", {"density": 0.5}, {"weights": [1.0, 1.0], "combination_type": "ties_svd", "density": 0.5,
                                "svd_rank": 32}),
])
def test_merges_match_peft_add_weighted_adapter(adapters, tmp_path: Path, method, options, peft_options) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    folder, base, (first, second) = adapters
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(folder), first, adapter_name="a")
    model.load_adapter(second, adapter_name="b")
    model.add_weighted_adapter(["a", "b"], adapter_name="merged", **peft_options)
    model.set_adapter("merged")
    merge_adapters([first, second], method, tmp_path / "ours", base=base, **options)
    tokens = torch.randint(3, 96, (2, 10))
    with torch.no_grad():
        theirs = model.eval()(tokens).logits
        ours = load_checkpoint(tmp_path / "ours").model(tokens)
    assert (theirs - ours).abs().max() < 1e-4


def test_merge_and_average_through_the_cli(adapters, tmp_path: Path) -> None:
    folder, base, (first, second) = adapters
    result = run_entry("merge", "--method", "ties", "--density", "0.5", base, "--adapter", first, "--adapter",
                       second, "--out", tmp_path / "ties")
    assert result.returncode == 0, result.stderr[-2000:]
    assert load_checkpoint(tmp_path / "ties").meta["method"] == "ties"
    same = run_entry("merge", "--method", "linear", "--base", base, first, second, "--out", tmp_path / "linear")
    assert same.returncode == 0, same.stderr[-2000:]
    expected = merge_adapters([first, second], "linear", tmp_path / "api", base=base)
    a, b = load_file(tmp_path / "linear" / "model.safetensors"), load_file(expected / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
