"""Running a server: access lines and request ids, the queue/prefill/decode/TTFT metrics, SIGTERM on an idle server,
refusals at start (log level, API keys), and slow or hostile connections (header and body deadlines, the
connection cap) answered within bounds and logged once per kind."""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import pytest
from conftest import assert_one_line_error, entry_command, entry_env, run_cli, run_entry
from serve.test_server import free_port, post, running_server, served_models  # noqa: F401 - served_models: fixture

pytest.importorskip("uvicorn", reason="the serve extra (pip install 'hybridformer[serve]') is not installed")


def wait_healthy(url: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert server.poll() is None and time.monotonic() < deadline, server.stderr.read() if server.poll() else ""
        time.sleep(0.1)


def test_access_lines_request_ids_and_quick_idle_exit(served_models):  # noqa: F811
    port = free_port()
    server = subprocess.Popen([*entry_command(), "serve", str(served_models["decoder_lm"]), "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=entry_env())
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, server)
        good = post(url, "/v1/completions", {"prompt": "secret words", "max_tokens": 3, "temperature": 0},
                    headers={"X-Request-Id": "trace-42"})
        bad = post(url, "/v1/completions", {"prompt": "secret words", "temperature": 7})
        streamed = post(url, "/v1/completions", {"prompt": "the cat", "max_tokens": 3, "temperature": 0,
                                                 "stream": True})
        time.sleep(0.3)
        start = time.monotonic()
        server.send_signal(signal.SIGTERM)
        status = server.wait(timeout=30)
        elapsed = time.monotonic() - start
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    log = server.stderr.read()
    assert status == 0 and elapsed < 2.0, (status, elapsed, log[-2000:])
    assert good.headers["x-request-id"] == "trace-42" and len(bad.headers["x-request-id"]) == 32
    lines = [line for line in log.splitlines() if "/v1/completions" in line]
    assert len(lines) == 3, log
    tokens = good.json()["usage"]["completion_tokens"]
    assert "POST /v1/completions 200 " in lines[0] and f"tokens={tokens} id=trace-42" in lines[0]
    assert " 422 " in lines[1] and f"id={bad.headers['x-request-id']}" in lines[1]
    assert streamed.status_code == 200 and "tokens=" in lines[2] and "tokens=-" not in lines[2]
    assert "secret" not in log


@contextmanager
def server_log(caplog, level: int) -> Iterator[None]:
    """The server's log lines into ``caplog`` (its logger does not propagate; the server configured it)."""
    logger = logging.getLogger("hybridformer.serve")
    before = logger.level
    logger.addHandler(caplog.handler)
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(caplog.handler)
        logger.setLevel(before)


def test_log_prompts_and_metrics(served_models, caplog):  # noqa: F811
    with running_server(served_models["decoder_lm"], log_prompts=True, max_wait_ms=1) as url:
        with server_log(caplog, logging.INFO):
            post(url, "/v1/completions", {"prompt": "the cat sat", "max_tokens": 4, "temperature": 0})
            post(url, "/v1/chat/completions", {"messages": [{"role": "user", "content": "a dog"}], "max_tokens": 4,
                                               "temperature": 0, "stream": True})
            metrics = httpx.get(url + "/metrics").text
    assert any("the cat sat" in r.getMessage() for r in caplog.records)
    values = {line.split()[0]: float(line.split()[1]) for line in metrics.splitlines() if line[0] != "#"}
    assert values["hybridformer_prefill_tokens_total"] > 5 and values["hybridformer_generated_tokens_total"] > 0
    assert values["hybridformer_time_to_first_token_seconds_count"] == 2
    assert values["hybridformer_queue_depth"] == 0 and values["hybridformer_running_rows"] == 0
    assert values['hybridformer_batching_mode{mode="continuous"}'] == 1  # torch engine, a language model


def test_start_refusals_are_one_line(served_models, monkeypatch, capsys):  # noqa: F811
    """Checked before the model loads: the real entry point once, the other cases in-process (same code path)."""
    assert_one_line_error(run_entry("serve", served_models["decoder_lm"], "--log-level", "loud", timeout=60), 2,
                          "--log-level", "loud")
    for args, words in [(["--api-key", ""], ["--api-key", "empty"]), (["--api-key", "sésame"], ["ASCII"])]:
        code, _, err = run_cli(monkeypatch, capsys, "serve", served_models["decoder_lm"], *args)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and all(w in lines[0] for w in words), err


def test_slow_and_hostile_connections(served_models, caplog):  # noqa: F811
    with running_server(served_models["decoder_lm"], header_timeout=0.5, body_timeout=0.5, max_connections=6) as url:
        with server_log(caplog, logging.WARNING):
            port = int(url.rsplit(":", 1)[1])
            half = socket.create_connection(("127.0.0.1", port))
            half.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")  # headers never end
            body = socket.create_connection(("127.0.0.1", port))
            body.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"prompt\"")
            time.sleep(0.2)  # both are read before the flood
            idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(12)]  # past the cap of 6
            refused = 0
            for sock in idle:
                sock.settimeout(0.3)
                try:
                    refused += sock.recv(1) == b""
                except TimeoutError:
                    pass
                except ConnectionResetError:
                    refused += 1
            half.settimeout(3)
            assert half.recv(100) == b"", "a connection without complete headers was held past the deadline"
            body.settimeout(3)
            assert b" 408 " in body.recv(1000).split(b"\r\n")[0]
            time.sleep(0.7)  # the idle connections meet the header deadline too
            assert httpx.get(url + "/health", timeout=5).status_code == 200
            for sock in [half, body, *idle]:
                sock.close()
    assert refused >= 6
    messages = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith("refused a connection") for m in messages) == 1, messages
    assert any(m.startswith("closed a connection that sent no complete request headers") for m in messages)
    assert any(m.startswith("closed a request whose body") for m in messages)


def test_sigterm_drains_within_the_deadline(served_models):  # noqa: F811
    """A request still waiting when --drain-timeout runs out is dropped; the server exits 0 soon after."""
    port = free_port()
    server = subprocess.Popen([*entry_command(), "serve", str(served_models["decoder_lm"]), "--port", str(port),
                               "--max-wait-ms", "20000", "--drain-timeout", "1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=entry_env())
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, server)
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(post, url, "/v1/generate", {"inputs": ["the cat"]})
            time.sleep(0.5)  # the request now waits in the batcher for company (20 s)
            start = time.monotonic()
            server.send_signal(signal.SIGTERM)
            status = server.wait(timeout=30)
            elapsed = time.monotonic() - start
            with pytest.raises(httpx.HTTPError):
                pending.result(timeout=30).raise_for_status()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert status == 0 and 1.0 <= elapsed < 4.0, (status, elapsed, server.stderr.read()[-2000:])
