"""The compiled decoding step (``ModelScorer(model, compile=True)``) gives the eager step's tokens, for every
architecture the torch engine decodes, and falls back to eager (one warning line) when compilation fails."""

from __future__ import annotations

import pytest
import torch

from hybridformer import ModelConfig, build_model
from hybridformer.compress.smooth import activation_peaks, smooth
from hybridformer.decoding import ModelScorer, beam_search, greedy_search
from hybridformer.decoding import compiled as compiled_module
from hybridformer.quantized import quantize_linears

from ..conftest import run_cli

# One decoder stack holding the decoding states the engine has: a growing KV cache (full attention, GQA), a
# rolling window, linear-attention sums, convolution histories (shortconv, conformer) and an SSM state.
HYBRID = ModelConfig(
    arch="decoder_lm", vocab_size=19, d_model=16, heads=2, kv_heads=1, ffn_dim=32, dropout=0.0, position="rope",
    norm="rmsnorm", activation="swiglu",
    decoder={"layers": 6, "layer_types": {3: "shortconv", 4: "mamba2", 5: "conformer"},
             "layer_attention": {1: {"name": "sliding_window", "window": 3}, 2: {"name": "linear"}},
             "conv": {"kernel_size": 3}, "ssm": {"state_size": 4, "head_dim": 8, "chunk_size": 4}})
SEQ2SEQ = ModelConfig(arch="encoder_decoder", vocab_size=19, d_model=16, heads=2, kv_heads=1, ffn_dim=32,
                      dropout=0.0, encoder={"layers": 1}, decoder={"layers": 2})


def greedy(scorer, prompt, new_tokens):
    return greedy_search(scorer, scorer.init_state(None), prompt, eos_id=-1, max_new_tokens=new_tokens)


@pytest.mark.slow
def test_compiled_step_equals_eager_on_every_decoder_state(one_thread):
    """Batch 1 (one graph: compiling is slow), past a cache reservation chunk, so the reserved buffers grow between
    compiled steps too. Wider batches and left-padded rows: the generate/bench test below."""
    torch.manual_seed(0)
    model = build_model(HYBRID).eval()
    prompt = torch.tensor([[5, 6, 7, 8]])
    old_chunk, compiled_module.RESERVE_CHUNK = compiled_module.RESERVE_CHUNK, 8
    try:
        scorer = ModelScorer(model, compile=True)
        assert greedy(scorer, prompt, 12) == greedy(ModelScorer(model), prompt, 12)
    finally:
        compiled_module.RESERVE_CHUNK = old_chunk
    assert scorer.decode.failed is None


@pytest.mark.slow
def test_compiled_step_with_packed_weights_equals_eager(one_thread, capsys):
    """A Llama-shaped model (GQA, RoPE, RMSNorm, SwiGLU) smoothed as int8 calibration does, with dynamic-int8
    linears in one layer, prepacked bf16 in the other and int4 in the vocabulary head: one compile covers each
    packed product (``quantized.packed_linear``), and the step compiles whole, without falling back."""
    torch.manual_seed(0)
    config = ModelConfig(arch="decoder_lm", vocab_size=48, d_model=32, heads=4, kv_heads=2, ffn_dim=64, dropout=0.0,
                         position="rope", norm="rmsnorm", activation="swiglu", decoder={"layers": 2})
    model = build_model(config).eval()
    smooth(model, activation_peaks(model, [torch.randint(3, 48, (2, 8))]))
    for part, fmt in ((model.decoder.layers[0], "dynamic_int8"), (model.decoder.layers[1], "bf16"), (model, "int4")):
        quantize_linears(part, fmt)
    prompt = torch.tensor([[5, 6, 7, 8]])
    scorer = ModelScorer(model, compile=True)
    assert greedy(scorer, prompt, 8) == greedy(ModelScorer(model), prompt, 8)
    assert scorer.decode.failed is None and "warning" not in capsys.readouterr().err


@pytest.mark.slow
def test_compiled_seq2seq_beam_search_equals_eager(one_thread):
    """Beam search reorders the caches and drops finished sentences between compiled steps."""
    torch.manual_seed(0)
    model = build_model(SEQ2SEQ).eval()
    src = torch.tensor([[5, 6, 7, 8, 2], [9, 10, 2, 0, 0]])
    prefix = torch.ones(2, 1, dtype=torch.long)

    def beams(scorer):
        hyps = beam_search(scorer, scorer.init_state(src), prefix, beam=3, eos_id=2, max_len=torch.tensor([9, 6]))
        return [h.tokens for h in hyps]

    scorer = ModelScorer(model, compile=True)
    assert beams(scorer) == beams(ModelScorer(model))
    assert scorer.decode.failed is None


@pytest.mark.slow
def test_window_with_sinks_at_cache_positions_compiles(one_thread, capsys):
    """StreamingLLM sinks re-rotated to cache positions: the one-token ring step branches on no value."""
    torch.manual_seed(0)
    sinks = {"name": "sliding_window", "window": 3, "num_global": 1, "sink_positions": "cache"}
    model = build_model(ModelConfig(arch="decoder_lm", vocab_size=19, d_model=16, heads=2, ffn_dim=32, dropout=0.0,
                                    position="rope", decoder={"layers": 1, "attention": sinks})).eval()
    prompt = torch.tensor([[5, 6, 7, 8]])
    scorer = ModelScorer(model, compile=True)
    assert greedy(scorer, prompt, 8) == greedy(ModelScorer(model), prompt, 8)
    assert scorer.decode.failed is None and "warning" not in capsys.readouterr().err


@pytest.mark.slow
def test_generate_and_bench_decode_take_compile(tmp_path, tiny_checkpoint, monkeypatch, capsys, one_thread):
    lm = tiny_checkpoint("decoder_lm", position="rope", kv_heads=1)
    (tmp_path / "in.txt").write_text("a b c\nd e\n")  # two prompt lengths: one left-padded batch
    outputs = []
    for flag in ([], ["--compile"]):
        code, out, err = run_cli(monkeypatch, capsys, "generate", lm, "--input", tmp_path / "in.txt", "--beam", "1",
                                 "--max-len-b", "6", *flag)
        assert code == 0 and "warning" not in err, err
        outputs.append(out)
    assert outputs[0] == outputs[1]
    code, out, err = run_cli(monkeypatch, capsys, "bench", "decode", lm, "--formats", "fp32", "--compile", "--peers",
                             "", "--prompts", "2", "--prompt-len", "4", "--new-tokens", "3", "--beam", "2",
                             "--rounds", "1", "--no-memory", "--out", tmp_path / "report")
    assert code == 0, err
    assert "| hybridformer torch fp32 compiled |" in out and "fp32 compiled: built and warmed up" in out
    assert "DIFFERS" not in out


def test_compile_is_refused_by_the_ct2_engine(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    (tmp_path / "in.txt").write_text("a b c\n")
    code, _, err = run_cli(monkeypatch, capsys, "generate", tiny_checkpoint(), "--input", tmp_path / "in.txt",
                           "--engine", "ct2", "--compile")
    assert code == 2 and "--compile compiles the torch engine's decoding step" in err


def test_a_failed_compilation_warns_once_and_decodes_eagerly(monkeypatch, capsys):
    def broken(fn, **options):
        def call(*args, **kwargs):
            raise RuntimeError("inductor: no C++ compiler found\nmore detail")
        return call

    monkeypatch.setattr(torch, "compile", broken)
    torch.manual_seed(0)
    model = build_model(HYBRID).eval()
    prompt = torch.tensor([[5, 6, 7, 8]])
    limit = torch._dynamo.config.recompile_limit
    scorer = ModelScorer(model, compile=True)
    assert greedy(scorer, prompt, 5) == greedy(ModelScorer(model), prompt, 5)
    assert torch._dynamo.config.recompile_limit == limit  # raised only while a step runs, not for the process
    err = capsys.readouterr().err
    assert err.count("warning: the compiled decoding step failed") == 1
    assert "RuntimeError: inductor: no C++ compiler found" in err and "more detail" not in err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (benchmarks/gpu_check.sh)")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_compiled_step_on_cuda_equals_eager(dtype):
    """The same compiled step on CUDA: identical greedy tokens in fp32; in bf16, the first compiled step's
    log-probs within bf16 rounding of the eager step's."""
    torch.manual_seed(0)
    model = build_model(HYBRID).eval().to("cuda", dtype)
    prompt = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12]], device="cuda")
    eager, compiled = ModelScorer(model), ModelScorer(model, compile=True)
    if dtype == torch.float32:
        assert greedy(compiled, prompt, 12) == greedy(eager, prompt, 12)
    else:
        steps = []
        for scorer in (eager, compiled):
            log_probs, state = scorer.step(scorer.init_state(None), prompt)
            steps.append(scorer.step(state, log_probs.argmax(-1, keepdim=True))[0])
        torch.testing.assert_close(steps[1], steps[0], atol=0.05, rtol=0.05)
    assert compiled.decode.failed is None
