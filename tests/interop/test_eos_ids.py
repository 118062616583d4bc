"""Several EOS ids (a chat model's EOS and its end-of-turn token, listed by config.json or
generation_config.json): conversion keeps the list, every decoding path stops on any of them, and the
HF export writes it back."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("transformers")

from interop.hf_tiny import save_tiny  # noqa: E402

from hybridformer import convert, load_checkpoint  # noqa: E402
from hybridformer.engines import GenerationOptions, load_engine  # noqa: E402

PROMPTS = [[5, 9, 11, 7], [8, 3, 30], [40, 41, 42, 43, 44]]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(checkpoint listing EOS 2 only, the same weights listing EOS 2 and an end-of-turn id, that id)."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("eos")
    _, folder = save_tiny("llama", root / "hf", rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    write_tokenizer(folder)
    plain = convert(folder, root / "plain")
    engine = load_engine(plain)
    first = engine.decode_batch([PROMPTS[0]], GenerationOptions(max_len_b=8, beam=1))[0]
    end_of_turn = next(t for t in first[2:] if t != 2)  # a token greedy search reaches, so stopping there shows
    (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, end_of_turn]}))
    return plain, convert(folder, root / "listed"), end_of_turn


def write_tokenizer(folder) -> None:
    """A word-level vocabulary of the tiny model's 96 ids (the engines need one; its text is irrelevant here)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2} | {f"w{i}": i for i in range(3, 96)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>"}))


def cut(ids: list[int], ends: set[int]) -> list[int]:
    return next((ids[:i] for i, t in enumerate(ids) if t in ends), ids)


def test_conversion_keeps_the_list(models) -> None:
    _, listed, end_of_turn = models
    cfg = load_checkpoint(listed).config
    assert (cfg.eos_id, cfg.eos_ids) == (2, [2, end_of_turn])


@pytest.mark.parametrize("engine", ["torch", "ct2"])
@pytest.mark.parametrize("beam", [1, 2])
def test_every_search_stops_on_any_eos(models, engine, beam) -> None:
    if engine == "ct2":
        pytest.importorskip("ctranslate2")
    plain, listed, end_of_turn = models
    opts = GenerationOptions(max_len_b=12, beam=beam)
    free = load_engine(plain, engine=engine).decode_batch(PROMPTS, opts)
    stopped = load_engine(listed, engine=engine).decode_batch(PROMPTS, opts)
    if beam == 1:  # greedy: the same path, cut at the first end-of-turn
        assert stopped == [cut(ids, {end_of_turn}) for ids in free]
    assert all(end_of_turn not in ids for ids in stopped)
    assert any(len(a) < len(b) for a, b in zip(stopped, free, strict=True))


def test_streaming_stops_on_end_of_turn(models) -> None:
    """The server's path: prompts of mixed lengths in one batch, every token handed over as it is chosen."""
    plain, listed, end_of_turn = models
    opts = GenerationOptions(max_len_b=12, beam=1)
    free = load_engine(plain).decode_batch(PROMPTS, opts)
    seen: dict[int, list[int]] = {}
    found = load_engine(listed).stream(PROMPTS, opts, emit=lambda row, token, _: seen.setdefault(row, []).append(token))
    expected = [cut(ids, {end_of_turn}) for ids in free]
    assert found == expected
    assert [seen.get(i, []) for i in range(len(PROMPTS))] == expected


@pytest.mark.parametrize("left_padding", [True, False])
def test_streaming_ends_at_the_end_of_turn_step(models, left_padding) -> None:
    """The streaming search knows every EOS id: a row ends at the step that picks the end-of-turn (no step spent
    forcing EOS after it), while an end-of-turn inside a longer prompt's forced tail (a model without left
    padding feeds it step by step) is prompt, not an end."""
    from dataclasses import replace

    plain, _, _ = models
    opts = GenerationOptions(max_len_b=12, beam=1, presence_penalty=50.0)  # every output token a new one
    engine = load_engine(plain)
    end_of_turn = engine.stream([PROMPTS[0]], opts)[0][3]
    prompts = [PROMPTS[0], PROMPTS[1] + [end_of_turn, 9, end_of_turn, 4]]
    free = [engine.stream([p], opts)[0] for p in prompts]
    listed = replace(engine, config=engine.config.model_copy(update={"extra_eos_ids": [end_of_turn]}))
    listed.scorer.left_padding = left_padding  # False: the longer prompt's tail is forced token by token
    steps = []
    inner = listed.scorer.step
    listed.scorer.step = lambda state, tokens: steps.append(1) or inner(state, tokens)
    alone = listed.stream([PROMPTS[0]], opts)
    assert alone == [free[0][:3]] and len(steps) == 4
    assert listed.stream(prompts, opts) == [cut(ids, {end_of_turn}) for ids in free]
    assert len(free[1]) > 2  # the tail's end-of-turn ended nothing


def test_ct2_batches_prompts_whose_tails_hold_an_end_of_turn(models) -> None:
    """CTranslate2 forces a longer prompt's tail token by token and never ends a row on a forced end token, so
    prompts holding an end-of-turn (every chat prompt) share a batch with shorter ones and get what they get alone."""
    pytest.importorskip("ctranslate2")
    from dataclasses import replace

    plain, _, _ = models
    engine = load_engine(plain, engine="ct2")
    engine = replace(engine, config=engine.config.model_copy(update={"extra_eos_ids": [9]}))  # 9: never generated
    prompts = [PROMPTS[0], PROMPTS[1] + [9, 4, 9, 4]]  # 4 and 7 tokens: the second's forced tail holds 9 twice
    opts = GenerationOptions(max_len_b=6, beam=1)
    alone = [engine.stream([p], opts)[0] for p in prompts]
    batches, run = [], engine._run
    engine._run = lambda batch, *args, **kw: batches.append(len(batch)) or run(batch, *args, **kw)
    assert engine.stream(prompts, opts) == alone and batches == [2]
    assert all(len(ids) == 6 for ids in alone)  # no forced 9 ended a row


def test_hf_export_writes_the_list(models, tmp_path) -> None:
    from hybridformer.interop.export import export_hf

    _, listed, end_of_turn = models
    out = export_hf(listed, tmp_path / "hf")
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] == [2, end_of_turn]
    assert load_checkpoint(convert(out, tmp_path / "again")).config.eos_ids == [2, end_of_turn]


def test_continuous_batching_stops_on_end_of_turn(models) -> None:
    """The server's continuous batcher: a row that picks the end-of-turn leaves without it."""
    import asyncio

    from hybridformer.serve.continuous import ContinuousBatcher, make_batcher
    from hybridformer.serve.metrics import Metrics

    plain, listed, end_of_turn = models
    opts = GenerationOptions(max_len_a=0.0, max_len_b=12, beam=1)
    free = load_engine(plain).decode_batch(PROMPTS, opts)

    async def serve():
        batcher = make_batcher(load_engine(listed), Metrics(), batching=True, max_batch_tokens=4096, max_rows=8,
                               max_wait_ms=1.0)
        batcher.start()
        outputs = await asyncio.gather(*(batcher.submit([p], opts, None) for p in PROMPTS))
        await batcher.close()
        return batcher, outputs

    batcher, outputs = asyncio.run(serve())
    assert isinstance(batcher, ContinuousBatcher)
    assert [rows[0] for rows in outputs] == [cut(ids, {end_of_turn}) for ids in free]
