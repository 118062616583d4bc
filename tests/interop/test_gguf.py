"""GGUF conversion: dequantization, llama.cpp's q/k permutation undone, metadata -> config; the real
SmolLM2 GGUF answers a chat prompt with exactly the tokens transformers produces from the same file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("gguf")

from conftest import SMOLLM2_GGUF
from interop.hf_tiny import llama_cpp_permute, save_tiny, write_tiny_gguf  # noqa: E402

from hybridformer import convert, generate, load_checkpoint  # noqa: E402
from hybridformer.data.side_files import SideFiles  # noqa: E402
from hybridformer.decoding.greedy import greedy_search  # noqa: E402
from hybridformer.decoding.scorer import ModelScorer  # noqa: E402
from hybridformer.errors import ConfigError  # noqa: E402
from hybridformer.interop.gguf import unpermute  # noqa: E402

QUESTION = "What is the capital of France?"


def test_unpermute_inverts_llama_cpp() -> None:
    weight = torch.randn(4 * 8, 5)
    assert torch.equal(unpermute(llama_cpp_permute(weight, 4), 4), weight)


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("gguf")
    hf, _ = save_tiny("llama", root / "hf", head_dim=None, attention_bias=False, mlp_bias=False,
                      rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    return write_tiny_gguf(hf, root / "tiny.gguf")


def test_tiny_gguf_matches_transformers_loading_it(tiny_gguf: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    theirs = AutoModelForCausalLM.from_pretrained(tiny_gguf.parent, gguf_file=tiny_gguf.name,
                                                  dtype=torch.float32).eval()
    ckpt = load_checkpoint(convert(tiny_gguf, tmp_path / "ours"))
    tokens = torch.randint(3, 96, (2, 12))
    with torch.no_grad():
        assert (ckpt.model(tokens) - theirs(tokens).logits).abs().max() < 1e-4
    assert not ckpt.config.tie_embeddings and ckpt.tokenizer is None  # no tokenizer metadata in this file


@pytest.mark.parametrize(("kind", "arch", "overrides"), [
    ("qwen3", "qwen3", {}),
    # llama.cpp's gemma3: a global layer every sixth, local base 10k, query scale 1/sqrt(head_dim)
    ("gemma3", "gemma3", dict(num_hidden_layers=6, layer_types=None, query_pre_attn_scalar=16,
                              rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1e6},
                                               "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}})),
])
def test_modern_gguf_matches_the_model_it_was_written_from(kind: str, arch: str, overrides: dict,
                                                           tmp_path: Path) -> None:
    """Float tensors under llama.cpp's names and metadata (Gemma's norms shifted by one) convert to the same model."""
    torch.manual_seed(0)
    hf, _ = save_tiny(kind, tmp_path / "hf", **overrides)
    path = write_tiny_gguf(hf, tmp_path / f"{kind}.gguf", arch=arch, quantized=False)
    ckpt = load_checkpoint(convert(path, tmp_path / "ours"))
    tokens = torch.randint(3, 96, (2, 14))
    with torch.no_grad():
        assert (ckpt.model(tokens) - hf(tokens).logits).abs().max() < 1e-4


def test_unsupported_gguf_rope_scaling_is_named(tmp_path: Path) -> None:
    hf, _ = save_tiny("llama", tmp_path / "hf", head_dim=None, attention_bias=False, mlp_bias=False,
                      rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    path = write_tiny_gguf(hf, tmp_path / "scaled.gguf", **{"llama.rope.scaling.type": "longrope"})
    with pytest.raises(ConfigError, match="llama.rope.scaling.type='longrope'"):
        convert(path, tmp_path / "out")


# ----------------------------------------------------------------------------- the real SmolLM2 GGUF


@pytest.fixture(scope="session")
def smollm2(smollm2_checkpoint):
    """(our converted checkpoint path and loaded Checkpoint, transformers model and tokenizer loading the same GGUF)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = smollm2_checkpoint
    model = AutoModelForCausalLM.from_pretrained(SMOLLM2_GGUF.parent, gguf_file=SMOLLM2_GGUF.name,
                                                 dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(SMOLLM2_GGUF.parent, gguf_file=SMOLLM2_GGUF.name)
    return out, load_checkpoint(out), model.eval(), tokenizer


@pytest.mark.slow
def test_smollm2_chat_answer_equals_transformers(smollm2) -> None:
    path, ckpt, hf, tokenizer = smollm2
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": QUESTION}], add_generation_prompt=True,
                                           tokenize=False)
    assert SideFiles.read(path).chat_template.prompt(QUESTION) == prompt
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids
    with torch.no_grad():
        theirs = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=20, do_sample=False)
    assert ckpt.tokenizer.encode(prompt, add_special_tokens=False).ids == ids[0].tolist()
    ours = greedy_search(ModelScorer(ckpt.model), ModelScorer(ckpt.model).init_state(None), ids,
                         eos_id=ckpt.config.eos_id, max_new_tokens=20)[0]
    assert ours + [ckpt.config.eos_id] == theirs[0, ids.shape[1]:].tolist()
    assert list(generate(ckpt, [QUESTION], beam=1, chat=True)) == ["The capital of France is Paris."]


@pytest.mark.slow
def test_smollm2_logits_on_real_text(smollm2) -> None:
    _, ckpt, hf, tokenizer = smollm2
    text_file = Path(__file__).resolve().parents[3] / "shared" / "data" / "tinyshakespeare" / "input.txt"
    if not text_file.is_file():
        pytest.skip(f"real data not found at {text_file}")
    ids = tokenizer(text_file.read_text()[:4000], return_tensors="pt").input_ids[:, :256]
    assert ids.shape[1] == 256
    with torch.no_grad():
        assert (ckpt.model(ids) - hf(ids).logits).abs().max() < 1e-3
