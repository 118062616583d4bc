"""``hybridformer serve``: batched answers equal lone ones and ``hybridformer generate``'s; bad requests get 4xx and
hurt no one; health, metrics, keys, the OpenAI routes; SIGTERM lets in-flight work finish and exits 0."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import torch
from conftest import TINY_TEXT

from hybridformer import generate

pytest.importorskip("fastapi", reason="the serve extra (pip install 'hybridformer[serve]') is not installed")
pytest.importorskip("uvicorn", reason="the serve extra (pip install 'hybridformer[serve]') is not installed")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spread_checkpoint(path: Path, tokenizer, arch: str) -> Path:
    """A tiny checkpoint with weights spread wide (std 0.5), so greedy outputs are varied and tie-free."""
    from hybridformer import ModelConfig, build_model, save_checkpoint

    cfg = ModelConfig(arch=arch, vocab_size=tokenizer.get_vocab_size(), d_model=16, heads=2, ffn_dim=32, dropout=0.0,
                      encoder={"layers": 1}, decoder={"layers": 1})
    torch.manual_seed(1)
    model = build_model(cfg).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.5)
    return save_checkpoint(path, model, cfg, tokenizer)


@pytest.fixture(scope="session")
def served_models(tmp_path_factory, tiny_tokenizer) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("served")
    return {arch: spread_checkpoint(root / arch, tiny_tokenizer, arch) for arch in ("encoder_decoder", "decoder_lm")}


@contextmanager
def running_server(checkpoint: Path, prepare=None, **settings) -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of ``checkpoint`` served in this process until the block ends
    (``prepare(app)`` runs on the FastAPI app before it starts)."""
    from hybridformer.serve import ServeSettings, build_server

    engine = settings.pop("engine", "torch")
    server = build_server(checkpoint, ServeSettings(engine=engine, **settings), port=free_port(),
                          log_level="warning")
    if prepare is not None:
        prepare(server.config.app)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


SRC = Path(__file__).resolve().parents[2] / "src"
LINES = TINY_TEXT + ["the cat ran in the park", "ein vogel sass", "we sang", ""]
OPTIONS = {"beam": 1, "max_len_a": 0.0, "max_len_b": 10}


def cli_generate(checkpoint: Path, lines: list[str], tmp_path: Path, *args: str) -> list[str]:
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n")
    env = os.environ | {"PYTHONPATH": str(SRC)}
    done = subprocess.run([sys.executable, "-m", "hybridformer", "generate", str(checkpoint), "--input",
                           str(tmp_path / "in.txt"), *args], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def post(url: str, route: str, body, **kwargs) -> httpx.Response:
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return httpx.post(url + route, content=data, timeout=60, **kwargs)


@pytest.mark.parametrize("arch", ["encoder_decoder", "decoder_lm"])
def test_concurrent_answers_equal_lone_answers_and_the_cli(served_models, arch, tmp_path):
    ckpt = served_models[arch]
    if arch == "encoder_decoder":  # the real command once; the public API (the same code path) for the LM
        expected = cli_generate(ckpt, LINES, tmp_path, "--beam", "1", "--max-len-a", "0", "--max-len-b", "10")
    else:
        expected = list(generate(ckpt, LINES, **OPTIONS))
    with running_server(ckpt, max_wait_ms=50) as url:
        alone = [post(url, "/v1/generate", {"inputs": [line]} | OPTIONS).json()["outputs"][0] for line in LINES]
        with ThreadPoolExecutor(len(LINES)) as pool:
            together = list(pool.map(lambda line: post(url, "/v1/generate", {"inputs": [line]} | OPTIONS), LINES))
        several = post(url, "/v1/generate", {"inputs": LINES} | OPTIONS).json()["outputs"]
        metrics = httpx.get(url + "/metrics").text
    assert [r.status_code for r in together] == [200] * len(LINES)
    assert [r.json()["outputs"][0] for r in together] == alone == several == expected
    assert any(o for o in expected)
    merged = [line for line in metrics.splitlines() if line.startswith('hybridformer_batch_requests_bucket{le="1"}')]
    count = [line for line in metrics.splitlines() if line.startswith("hybridformer_batch_requests_count")]
    assert int(merged[0].split()[-1]) < int(count[0].split()[-1]), "no two requests were ever batched together"


def test_ct2_engine_serves_the_same_greedy_outputs(served_models, tmp_path):
    pytest.importorskip("ctranslate2")
    ckpt = served_models["encoder_decoder"]
    expected = list(generate(ckpt, LINES[:6], **OPTIONS))
    with running_server(ckpt, engine="ct2", max_wait_ms=50) as url:
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda line: post(url, "/v1/generate", {"inputs": [line]} | OPTIONS), LINES[:6]))
        assert httpx.get(url + "/health").json()["engine"] == "ct2"
    assert [a.json()["outputs"][0] for a in answers] == expected


def test_bad_requests_get_4xx_and_hurt_no_one(served_models):
    good = {"inputs": ["the cat sat"]} | OPTIONS
    key = {"Authorization": "Bearer sesame"}
    with running_server(served_models["encoder_decoder"], api_key="sesame", max_input_tokens=20, max_inputs=4,
                        max_new_tokens=50, max_body_bytes=2000) as url:
        reference = post(url, "/v1/generate", good, headers=key)
        cases = {
            "malformed JSON": (post(url, "/v1/generate", b'{"inputs": ["a"', headers=key), 422),
            "not an object": (post(url, "/v1/generate", [1, 2], headers=key), 422),
            "wrong type": (post(url, "/v1/generate", {"inputs": "the cat"}, headers=key), 422),
            "wrong option type": (post(url, "/v1/generate", {"inputs": ["a"], "beam": "4"}, headers=key), 422),
            "empty input": (post(url, "/v1/generate", {"inputs": []}, headers=key), 422),
            "unknown field": (post(url, "/v1/generate", {"inputs": ["a"], "checkpoint": "/etc"}, headers=key), 422),
            "bad option": (post(url, "/v1/generate", {"inputs": ["a"], "top_p": 2.0}, headers=key), 422),
            "sample with beams": (post(url, "/v1/generate", {"inputs": ["a"], "sample": True, "beam": 3},
                                       headers=key), 422),
            "too long an input": (post(url, "/v1/generate", {"inputs": ["the cat " * 30]}, headers=key), 413),
            "too many inputs": (post(url, "/v1/generate", {"inputs": ["a"] * 5}, headers=key), 413),
            "too long an output": (post(url, "/v1/generate", {"inputs": ["a"], "max_len_b": 500}, headers=key), 413),
            "too big a body": (post(url, "/v1/generate", {"inputs": ["a" * 3000]}, headers=key), 413),
            "no key": (post(url, "/v1/generate", good), 401),
            "wrong key": (post(url, "/v1/generate", good, headers={"Authorization": "Bearer sesamE"}), 401),
            "metrics without key": (httpx.get(url + "/metrics"), 401),
            "LM route on seq2seq": (post(url, "/v1/completions", {"prompt": "a"}, headers=key), 404),
        }
        after = post(url, "/v1/generate", good, headers=key)
        health = httpx.get(url + "/health")
        metrics = httpx.get(url + "/metrics", headers=key)
    for name, (response, status) in cases.items():
        assert response.status_code == status, (name, response.text)
        assert response.json()["error"]["message"], name
    assert reference.status_code == after.status_code == 200 and after.json() == reference.json()
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert metrics.status_code == 200
    assert 'hybridformer_requests_total{route="/v1/generate",status="422"}' in metrics.text
    assert "hybridformer_request_latency_seconds_bucket" in metrics.text
    assert "hybridformer_generated_tokens_total" in metrics.text


def test_openai_routes_for_a_language_model(served_models, tmp_path):
    ckpt = served_models["decoder_lm"]
    expected = list(generate(ckpt, ["the cat"], beam=1, max_len_a=0.0, max_len_b=6))
    with running_server(ckpt) as url:
        completion = post(url, "/v1/completions", {"prompt": "the cat", "max_tokens": 6, "temperature": 0}).json()
        streamed = post(url, "/v1/completions", {"prompt": "the cat", "max_tokens": 6, "temperature": 0,
                                                 "stream": True})
        chat = post(url, "/v1/chat/completions", {"model": "x", "messages": [{"role": "user", "content": "hi"}],
                                                  "max_tokens": 4, "temperature": 0}).json()
        chat_stream = post(url, "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}],
                                                         "max_tokens": 4, "temperature": 0, "stream": True})
        sampled = [post(url, "/v1/completions", {"prompt": "the", "max_tokens": 5, "seed": 7}).json()
                   for _ in range(2)]
        bad = post(url, "/v1/chat/completions", {"messages": [{"role": "robot", "content": "hi"}]})
        models = httpx.get(url + "/v1/models").json()
    assert completion["choices"][0]["text"].strip() == expected[0].strip()
    assert completion["usage"]["completion_tokens"] <= 6
    events = [line.removeprefix("data: ") for line in streamed.text.splitlines() if line.startswith("data: ")]
    assert streamed.headers["content-type"].startswith("text/event-stream") and events[-1] == "[DONE]"
    assert "".join(json.loads(e)["choices"][0]["text"] for e in events[:-1]) == completion["choices"][0]["text"]
    chat_events = [json.loads(line[6:]) for line in chat_stream.text.splitlines()
                   if line.startswith("data: {")]
    content = "".join(e["choices"][0]["delta"].get("content", "") for e in chat_events)
    assert content == chat["choices"][0]["message"]["content"] and chat_events[-1]["choices"][0]["finish_reason"]
    assert sampled[0]["choices"][0]["text"] == sampled[1]["choices"][0]["text"]
    assert bad.status_code == 422 and models["data"][0]["object"] == "model"


def test_sigterm_finishes_in_flight_work_and_exits_zero(served_models, tmp_path):
    port = free_port()
    env = os.environ | {"PYTHONPATH": str(SRC)}
    server = subprocess.Popen([sys.executable, "-m", "hybridformer", "serve", str(served_models["decoder_lm"]),
                               "--port", str(port), "--max-wait-ms", "1500", "--log-level", "warning"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, server.stderr.read() if server.poll() else ""
            time.sleep(0.1)
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(post, url, "/v1/generate", {"inputs": ["the cat"]} | OPTIONS)
            time.sleep(0.5)  # the request now waits in the batcher (max-wait 1.5 s)
            server.send_signal(signal.SIGTERM)
            answer = pending.result(timeout=60)
        assert answer.status_code == 200 and len(answer.json()["outputs"]) == 1
        assert server.wait(timeout=60) == 0
        with pytest.raises(httpx.TransportError):
            httpx.get(url + "/health", timeout=1)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_cli_refuses_a_taken_port_in_one_line(served_models):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = os.environ | {"PYTHONPATH": str(SRC)}
        done = subprocess.run([sys.executable, "-m", "hybridformer", "serve", str(served_models["decoder_lm"]),
                               "--port", str(port), "--log-level", "critical"], capture_output=True, text=True,
                              env=env, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "another --port" in done.stderr.strip().splitlines()[-1]
