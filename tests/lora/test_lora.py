"""LoRA adapters: trained through ``hybridformer train`` on a tiny converted Llama, written in the PEFT format with
Hugging Face names (``peft`` loads them on the ``export --to hf`` folder with our logits), read back from
``peft``-made adapters, resumed exactly, and folded into a plain checkpoint that equals base + adapter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("peft")
pytest.importorskip("transformers")

from conftest import TINY_TEXT, assert_one_line_error, run_entry  # noqa: E402
from interop.hf_tiny import converted_tiny, save_tiny  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from hybridformer import convert, load_checkpoint  # noqa: E402
from hybridformer.checkpoint import load_meta  # noqa: E402
from hybridformer.config import LoraConfig  # noqa: E402
from hybridformer.errors import CheckpointError  # noqa: E402
from hybridformer.lora import add_lora, fold_into, hold_frozen, load_with_adapter, lora_layout, read_adapter  # noqa: E402
from hybridformer.quantized import Int8WeightLinear  # noqa: E402
from hybridformer.train import read_metrics  # noqa: E402


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(base checkpoint, recipe, run dir): 4 LoRA steps with EMA through the real entry point."""
    import yaml

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("lora")
    base = converted_tiny(root, TINY_TEXT)
    (root / "text.txt").write_text("\n".join(TINY_TEXT * 20) + "\n")
    recipe = root / "lora.yaml"
    recipe.write_text(yaml.safe_dump({
        "data": {"train_file": str(root / "text.txt"), "block_size": 16, "max_tokens": 64},
        "train": {"init_from": str(base), "max_steps": 4, "eval_every": 2, "save_every": 2, "warmup_steps": 0,
                  "lr": 0.01, "ema_decay": 0.9, "lora": {"rank": 4, "alpha": 8}}}))
    result = run_entry("train", recipe, "--out", root / "run", "--no-progress")
    assert result.returncode == 0, result.stderr[-2000:]
    # peft imports torchao: its import-time warnings are not the user's business
    assert "torchao" not in result.stderr and "register_constant" not in result.stderr, result.stderr[-2000:]
    return base, recipe, root / "run"


def logits(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(tokens)


def test_lora_run_writes_peft_adapters_and_resumes_exactly(lora_run, tmp_path: Path) -> None:
    base, recipe, run = lora_run
    best = run / "checkpoints" / "best"
    assert {"adapter_config.json", "adapter_model.safetensors", "config.json", "tokenizer.json"} <= {
        p.name for p in best.iterdir()}
    assert not (best / "model.safetensors").exists()  # the base is not copied: the adapter names it
    config = json.loads((best / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(base.resolve()) and config["r"] == 4
    assert sorted(config["target_modules"]) == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj",
                                                "v_proj"]
    tensors = load_file(best / "adapter_model.safetensors")
    assert tensors["base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight"].shape == (4, 32)
    assert tensors["base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"].shape == (32, 4)
    assert (run / "checkpoints" / "ema" / "adapter_model.safetensors").is_file()
    saved = json.loads(json.dumps(__import__("yaml").safe_load((run / "config.yaml").read_text())))
    assert saved["train"]["lora"] == {"rank": 4, "alpha": 8.0, "dropout": 0.0,
                                      "targets": ["q", "k", "v", "o", "gate", "up", "down"], "bias": "none"}

    half = run_entry("train", recipe, "--out", tmp_path / "resumed", "--set", "train.max_steps=2", "--no-progress")
    assert half.returncode == 0, half.stderr[-2000:]
    rest = run_entry("train", recipe, "--out", tmp_path / "resumed", "--resume", "--no-progress")
    assert rest.returncode == 0, rest.stderr[-2000:]
    whole = load_file(run / "checkpoints" / "step-000004" / "adapter_model.safetensors")
    again = load_file(tmp_path / "resumed" / "checkpoints" / "step-000004" / "adapter_model.safetensors")
    assert all(torch.equal(whole[k], again[k]) for k in whole)


def test_adapter_loads_in_peft_on_the_hf_export(lora_run, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base, _, run = lora_run
    best = run / "checkpoints" / "best"
    result = run_entry("export", base, "--to", "hf", "--adapter", best, "--out", tmp_path / "hf")
    assert result.returncode == 0, result.stderr[-2000:]
    tokens = torch.randint(3, 90, (2, 12))
    ours = logits(load_with_adapter(None, best).model, tokens)
    hf = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tmp_path / "hf"), tmp_path / "hf" / "adapter")
    with torch.no_grad():
        assert (hf.eval()(tokens).logits - ours).abs().max() < 1e-4
        with hf.disable_adapter():
            assert (hf(tokens).logits - ours).abs().max() > 1e-3  # the adapter changes the model
    merged = run_entry("export", base, "--to", "hf", "--adapter", best, "--merge-adapter", "--out", tmp_path / "m")
    assert merged.returncode == 0, merged.stderr[-2000:]
    with torch.no_grad():
        plain = AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()
        assert (plain(tokens).logits - ours).abs().max() < 1e-4


def test_fold_equals_base_plus_adapter(lora_run, tmp_path: Path, in_process) -> None:
    """``merge --fold`` (W + ΔW) gives the logits of the base running peft's LoRA layers (W x + B A x)."""
    base, _, run = lora_run
    best = run / "checkpoints" / "best"
    result = run_entry("merge", "--fold", "--adapter", best, "--out", tmp_path / "folded")
    assert result.returncode == 0, result.stderr[-2000:]
    folded = load_checkpoint(tmp_path / "folded")
    unfolded = load_checkpoint(base)
    layers = add_lora(unfolded.model, lora_layout(unfolded.model, unfolded.config, load_meta(base)),
                      LoraConfig(rank=4, alpha=8))
    layers.load(unfolded.model, read_adapter(best), LoraConfig(rank=4, alpha=8))
    tokens = torch.randint(3, 90, (2, 12))
    assert (logits(folded.model, tokens) - logits(unfolded.model.eval(), tokens)).abs().max() < 1e-5
    assert (folded.path / "tokenizer_config.json").is_file()  # the chat template travels

    again = in_process("merge", "--fold", "--adapter", best, "--out", tmp_path / "folded")
    assert_one_line_error(again, 2, "--overwrite")
    (tmp_path / "in.txt").write_text("the cat\n")
    plain = in_process("generate", best, "--input", tmp_path / "in.txt", "--beam", "1", "--max-len-b", "3")
    with_flag = in_process("generate", base, "--adapter", best, "--input", tmp_path / "in.txt", "--beam", "1",
                           "--max-len-b", "3")
    assert plain.returncode == 0 and plain.stdout == with_flag.stdout, plain.stderr[-2000:]
    ct2 = in_process("generate", base, "--adapter", best, "--engine", "ct2", "--input", tmp_path / "in.txt")
    assert_one_line_error(ct2, 2, "--fold")


def test_peft_made_adapter_loads_in_ours(tmp_path: Path) -> None:
    """An adapter ``peft`` trained elsewhere (some projections, per-module ranks and alphas, rsLoRA) on a Hugging
    Face model we convert: folded into our checkpoint, the logits are peft's."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    torch.manual_seed(0)
    hf, folder = save_tiny("llama", tmp_path / "hf")
    ours = convert(folder, tmp_path / "ours")
    config = PeftLoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj", "up_proj", "o_proj"],
                            init_lora_weights=False, rank_pattern={"v_proj": 3}, alpha_pattern={"o_proj": 8},
                            use_rslora=True)
    peft_model = get_peft_model(hf, config).eval()
    peft_model.save_pretrained(tmp_path / "adapter")
    tokens = torch.randint(3, 96, (2, 10))
    with torch.no_grad():
        expected = peft_model(tokens).logits
    folded = load_with_adapter(ours, tmp_path / "adapter").model
    assert (logits(folded, tokens) - expected).abs().max() < 1e-4
    save_tiny("llama", tmp_path / "other", num_hidden_layers=1)
    with pytest.raises(CheckpointError, match="layers.1.*another base model"):
        load_with_adapter(convert(tmp_path / "other", tmp_path / "other-ours"), tmp_path / "adapter")


def test_fused_projection_keeps_each_part_a_separate_adapter(lora_run) -> None:
    """Targets q and v only: the fused q/k/v layer's B stays block-diagonal and zero on k's rows through
    training steps, so the file holds exactly q's and v's adapters."""
    base = load_checkpoint(lora_run[0])
    lora = LoraConfig(rank=2, alpha=2, targets=["q", "v"])
    layers = add_lora(base.model, lora_layout(base.model, base.config, load_meta(lora_run[0])), lora)
    optimizer = torch.optim.AdamW([p for p in base.model.parameters() if p.requires_grad], lr=0.1,
                                  weight_decay=0.1)
    for _ in range(2):
        base.model.train()(torch.randint(3, 90, (2, 8))).square().mean().backward()
        optimizer.step()
        optimizer.zero_grad()
    module = "decoder.layers.0.sublayers.0.body.qkv_proj"
    b = base.model.get_submodule(module).lora_B["default"].weight
    (q, v) = layers.parts[module]
    assert (q.name, v.name) == ("model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj")
    assert b[q.start: q.stop, :2].abs().sum() > 0 and b[v.start: v.stop, 2:].abs().sum() > 0
    off_block = b.detach().clone()
    off_block[q.start: q.stop, :2] = 0
    off_block[v.start: v.stop, 2:] = 0
    assert off_block.abs().max() == 0  # k's rows and the cross blocks never move
    files = layers.tensors(dict(base.model.named_parameters()))
    assert len(files) == 2 * 2 * 2 and all("q_proj" in k or "v_proj" in k for k in files)


def test_bf16_base_ema_export_and_config_errors(lora_run, tmp_path: Path) -> None:
    from hybridformer import train
    from hybridformer.engines import load_engine
    from hybridformer.errors import ConfigError
    from hybridformer.train import export_ema
    from hybridformer.train.setup import load_recipe

    base, recipe, run = lora_run
    overrides = ["train.base_precision=bf16", "train.precision=bf16", "train.max_steps=2", "train.lora.targets=[q,v]",
                 "train.loss_chunk=16", "train.activation_checkpointing=selective"]  # the recommended setting
    result = train(recipe, tmp_path / "bf16", overrides=overrides)
    assert result.status == "completed" and result.best_valid_loss < 10
    tensors = load_file(tmp_path / "bf16" / "checkpoints" / "best" / "adapter_model.safetensors")
    assert {t.dtype for t in tensors.values()} == {torch.float32} and len(tensors) == 8

    exported = export_ema(run, tmp_path / "ema")
    assert (exported / "adapter_model.safetensors").is_file()
    decoder = load_engine(base, adapter=exported)  # what `serve --adapter` runs
    tokens = torch.randint(3, 90, (1, 6))
    assert torch.allclose(decoder.scorer.model(tokens), logits(load_with_adapter(base, exported).model, tokens))

    for bad, words in [(["train.lora.targets=[q,q]"], "name each projection once"),
                       (["train.base_precision=bf16"], "train.precision=bf16"),
                       (["train.lora=null", "train.base_precision=int8"], "needs train.lora"),
                       (["train.init_from=null"], "set train.init_from")]:
        with pytest.raises(ConfigError, match=words):
            load_recipe(recipe, bad)


def test_averaging_a_lora_run_averages_the_updates(lora_run, tmp_path: Path) -> None:
    from hybridformer.fusion import average_checkpoints, last_checkpoints
    from hybridformer.lora import deltas_for

    base, _, run = lora_run
    steps = last_checkpoints(run, 2)
    averaged = load_checkpoint(average_checkpoints(steps, tmp_path / "avg")).model.state_dict()
    start = load_checkpoint(base)
    deltas = [deltas_for(start, read_adapter(step)) for step in steps]
    for name, weight in start.model.state_dict().items():
        expected = weight + (deltas[0][name] + deltas[1][name]) / 2 if name in deltas[0] else weight
        assert torch.allclose(averaged[name], expected, atol=1e-6), name


INT8_LORA = LoraConfig(rank=4, alpha=8)  # the fixture's


def adapted(base: Path, adapter, int8: bool) -> torch.nn.Module:
    """The base with the adapter's LoRA layers as training builds them, the frozen base in int8 or float."""
    ckpt = load_checkpoint(base)
    layers = add_lora(ckpt.model, lora_layout(ckpt.model, ckpt.config, load_meta(base)), INT8_LORA)
    if int8:
        hold_frozen(ckpt.model, "int8")
    layers.load(ckpt.model, adapter, INT8_LORA)
    return ckpt.model


def test_int8_base_trains_and_equals_the_dequantised_base_plus_adapter(lora_run, tmp_path: Path) -> None:
    from hybridformer import train

    base, recipe, _ = lora_run
    result = train(recipe, tmp_path / "int8", overrides=["train.base_precision=int8", "train.max_steps=12",
                                                         "train.lr=0.05", "train.log_every=1", "train.eval_every=12"])
    assert result.status == "completed"
    losses = [e["loss"] for e in read_metrics(tmp_path / "int8" / "metrics.jsonl") if e["kind"] == "train"]
    assert len(losses) == 12 and sum(losses[-3:]) < sum(losses[:3]) - 0.1, losses
    adapter = read_adapter(tmp_path / "int8" / "checkpoints" / "best")

    int8 = adapted(base, adapter, int8=True)
    held = {name: m.weight_int8.float() * m.weight_scale.float()[:, None]
            for name, m in int8.named_modules() if isinstance(m, Int8WeightLinear)}
    adapted_layers = [name for name in held if name.endswith(".base_layer")]
    assert len(adapted_layers) == 4 * 2 and len(held) == 4 * 2 + 1  # qkv, o, gate-up, down; the untied output
    reference = adapted(base, adapter, int8=False)
    dequantised = load_checkpoint(base)
    for name, weight in held.items():
        reference.get_submodule(name).weight.data = weight
        dequantised.model.get_submodule(name.removesuffix(".base_layer")).weight.data = weight.clone()
    folded = fold_into(dequantised, adapter).model

    tokens = torch.randint(3, 90, (2, 7))
    outs = [model(tokens) for model in (int8, reference)]
    assert torch.allclose(outs[0], outs[1], atol=1e-5)
    with torch.no_grad():
        assert torch.allclose(outs[0], folded(tokens), atol=1e-4)
        assert torch.allclose(int8(tokens), outs[1], atol=5e-2)  # inference: the int8 kernel, in bf16
    for out in outs:
        out.square().mean().backward()
    grads = [{n: p.grad for n, p in model.named_parameters() if p.requires_grad} for model in (int8, reference)]
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) == 2 * len(adapted_layers)
    for name, grad in grads[0].items():
        assert torch.allclose(grad, grads[1][name], rtol=1e-4, atol=1e-6), name
