"""The OpenAI routes through the official ``openai`` client: stop strings that end decoding, n, logprobs, penalties
(against an independent full-forward greedy loop), seeds, the streamed usage chunk, max_completion_tokens,
response_format, unknown fields ignored, unhonourable ones refused, the model name echoed; hostile bodies are 4xx."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import torch
from serve.test_server import post, running_server, served_models  # noqa: F401 - served_models: fixture

openai = pytest.importorskip("openai", reason="the openai client (test extra) is not installed")

USER = [{"role": "user", "content": "the cat sat"}]


@pytest.fixture(scope="module")
def lm_server(served_models):  # noqa: F811
    with running_server(served_models["decoder_lm"], max_wait_ms=20) as url:
        yield url


@pytest.fixture
def client(lm_server):
    return openai.OpenAI(base_url=lm_server + "/v1", api_key="none", max_retries=0)


def test_stop_ends_decoding_and_usage_counts_only_kept_tokens(client):
    full = client.completions.create(model="m", prompt="the cat", max_tokens=24, temperature=0)
    text = full.choices[0].text
    assert full.usage.completion_tokens >= 8, "the tiny model should not end this early"
    stop = text[len(text) // 3: len(text) // 3 + 2]
    cut = text[: text.index(stop)]
    stopped = client.completions.create(model="m", prompt="the cat", max_tokens=24, temperature=0, stop=[stop, "@@"])
    assert stopped.choices[0].text == cut and stopped.choices[0].finish_reason == "stop"
    assert stopped.usage.completion_tokens < full.usage.completion_tokens
    streamed = client.completions.create(model="m", prompt="the cat", max_tokens=24, temperature=0, stop=stop,
                                         stream=True, stream_options={"include_usage": True})
    chunks = list(streamed)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == cut
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == stopped.usage.completion_tokens


def test_stream_usage_chunk_and_text_equal_the_whole_answer(client):
    whole = client.chat.completions.create(model="m", messages=USER, max_tokens=10, temperature=0)
    chunks = list(client.chat.completions.create(model="m", messages=USER, max_tokens=10, temperature=0, stream=True,
                                                 stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].usage.model_dump() == whole.usage.model_dump() and chunks[-2].choices[0].finish_reason
    assert all(c.usage is None for c in chunks[:-1])


def test_n_and_seed(client):
    def sample(seed: int):
        return client.completions.create(model="m", prompt="the", max_tokens=8, n=3, seed=seed, temperature=1.0)

    first, again, other = sample(5), sample(5), sample(6)
    texts = [c.text for c in first.choices]
    assert [c.index for c in first.choices] == [0, 1, 2] and len(set(texts)) > 1
    assert texts == [c.text for c in again.choices] != [c.text for c in other.choices]
    greedy = client.chat.completions.create(model="m", messages=USER, max_tokens=5, temperature=0, n=2, logprobs=True)
    assert greedy.choices[0].message.content == greedy.choices[1].message.content
    assert greedy.usage.completion_tokens == 2 * len(greedy.choices[0].logprobs.content)


def test_logprobs_chat_and_completions(client):
    chat = client.chat.completions.create(model="m", messages=USER, max_tokens=6, temperature=0, logprobs=True,
                                          top_logprobs=3)
    content = chat.choices[0].logprobs.content
    assert len(content) == chat.usage.completion_tokens
    assert "".join(t.token for t in content) == chat.choices[0].message.content
    for token in content:  # greedy: the chosen token is the most likely one
        assert len(token.top_logprobs) == 3 and token.logprob <= 0
        assert token.logprob == pytest.approx(token.top_logprobs[0].logprob)
        assert [t.logprob for t in token.top_logprobs] == sorted((t.logprob for t in token.top_logprobs), reverse=True)
    legacy = client.completions.create(model="m", prompt="the cat", max_tokens=5, temperature=0, logprobs=2)
    lp = legacy.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == legacy.usage.completion_tokens
    assert all(len(top) <= 2 for top in lp.top_logprobs) and lp.text_offset[0] == 0


def reference_greedy(checkpoint, prompt: list[int], steps: int, presence: float, frequency: float) -> list[int]:
    """Greedy decoding by full forward passes, penalties applied by hand: the oracle for the cached, batched path."""
    from hybridformer import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    model, eos = ckpt.model.eval(), ckpt.config.eos_id
    ids, out = list(prompt), []
    counts = torch.zeros(ckpt.config.vocab_size)
    with torch.no_grad():
        for _ in range(steps):
            logits = model(torch.tensor([ids]))[0, -1].float()
            logits[ckpt.config.pad_id] = float("-inf")
            scores = logits.log_softmax(-1) - presence * counts.gt(0) - frequency * counts
            token = int(scores.argmax())
            if token == eos:
                break
            ids.append(token)
            out.append(token)
            counts[token] += 1
    return out


def test_penalties_equal_a_hand_penalised_greedy_loop(client, served_models):  # noqa: F811
    from hybridformer import load_checkpoint
    from hybridformer.data.text import encode_source

    ckpt = load_checkpoint(served_models["decoder_lm"])
    prompt = encode_source(ckpt.tokenizer, "the cat", ckpt.config)
    plain = client.completions.create(model="m", prompt="the cat", max_tokens=16, temperature=0)
    penalised = client.completions.create(model="m", prompt="the cat", max_tokens=16, temperature=0,
                                          presence_penalty=0.7, frequency_penalty=1.5)
    expected = ckpt.tokenizer.decode(reference_greedy(served_models["decoder_lm"], prompt, 16, 0.7, 1.5))
    assert penalised.choices[0].text == expected
    assert plain.choices[0].text != expected, "the penalties should change this answer"


def test_fields_ignored_refused_and_echoed(client, lm_server):
    answer = client.chat.completions.create(model="my-model", messages=USER, max_completion_tokens=3, temperature=0,
                                            response_format={"type": "text"},
                                            extra_body={"some_future_field": {"x": 1}, "metadata": None})
    assert answer.model == "my-model" and answer.usage.completion_tokens <= 3
    for field, value in [("tools", [{"type": "function", "function": {"name": "f"}}]), ("logit_bias", {"5": 10}),
                         ("response_format", {"type": "json_object"})]:
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model="m", messages=USER, max_tokens=3, **{field: value})
        assert refused.value.status_code == 400 and field in str(refused.value)


@pytest.mark.parametrize("body", [
    '{"prompt": "a", "temperature": Infinity}', '{"prompt": "a", "temperature": NaN}',
    '{"prompt": "a", "seed": ' + "9" * 5000 + "}", '{"prompt": "a", "seed": ' + "9" * 4000 + "}",
    '{"prompt": "\\ud800 lone"}', '{"prompt": "a", "x": ' + "[" * 50000 + "]" * 50000 + "}",
])
def test_hostile_bodies_are_4xx(lm_server, body):
    response = post(lm_server, "/v1/completions", body.encode())
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"]["message"]
    assert httpx.get(lm_server + "/health").status_code == 200


def test_generate_route_refuses_infinite_temperature(lm_server):
    response = post(lm_server, "/v1/generate", b'{"inputs": ["a"], "sample": true, "temperature": 1e999}')
    assert response.status_code == 422, response.text


def test_ct2_engine_echoes_the_model_and_stops_decoding(served_models):  # noqa: F811
    pytest.importorskip("ctranslate2")
    with running_server(served_models["decoder_lm"], engine="ct2") as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
        full = client.completions.create(model="asked-for", prompt="the cat", max_tokens=24, temperature=0)
        text = full.choices[0].text
        stop = text[len(text) // 3: len(text) // 3 + 2]
        stopped = client.completions.create(model="m", prompt="the cat", max_tokens=24, temperature=0, stop=stop)
        with pytest.raises(openai.BadRequestError, match="presence_penalty"):
            client.completions.create(model="m", prompt="the cat", max_tokens=4, presence_penalty=1.0)
    assert full.model == "asked-for"
    assert stopped.choices[0].text == text[: text.index(stop)]
    assert stopped.usage.completion_tokens < full.usage.completion_tokens


def test_streamed_pieces_hold_back_byte_runs():
    """A byte that decodes alone ('3') can become U+FFFD once the next byte arrives: the pieces still add up."""
    from tokenizers import Tokenizer, decoders, models

    from hybridformer.serve.textstream import TextStream

    vocab = {"<unk>": 0, "<0x33>": 1, "<0xE2>": 2, "e": 3, "<0x82>": 4, "<0xAC>": 5}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>", byte_fallback=True))
    tokenizer.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
    for ids in ([1, 2, 3, 1], [2, 4, 5, 3, 1, 2], [1, 1, 3]):
        stream = TextStream(tokenizer, [])
        pieces = "".join(stream.push(t) for t in ids)
        rest, text, _ = stream.finish(ids, 100)
        assert pieces + rest == text == tokenizer.decode(ids), ids
    assert tokenizer.decode([1]) == "3" and not tokenizer.decode([1, 2]).startswith("3")  # the case itself


def test_concurrent_requests_answer_as_each_alone(client, lm_server):
    """Continuous batching through the official client: mixed prompts, budgets and options decoded together."""
    def ask(extra: dict, content: str, max_tokens: int):
        answer = client.chat.completions.create(model="m", messages=[{"role": "user", "content": content}],
                                                max_tokens=max_tokens, **extra)
        return [c.message.content for c in answer.choices], answer.usage.completion_tokens

    cases = [({"temperature": 0}, "the cat", 12), ({"temperature": 0}, "a dog ran in the park and the bird sang", 5),
             ({"temperature": 1.0, "seed": 3, "n": 2}, "we read", 9),
             ({"temperature": 0, "presence_penalty": 0.8, "frequency_penalty": 0.4}, "the bird", 10),
             ({"temperature": 0, "stop": ["e"]}, "ein hund", 12)]
    alone = [ask(*case) for case in cases]
    with ThreadPoolExecutor(len(cases)) as pool:
        together = list(pool.map(lambda case: ask(*case), cases))
    assert together == alone
    assert 'hybridformer_batching_mode{mode="continuous"} 1' in httpx.get(lm_server + "/metrics").text
