"""Load test of ``hybridformer serve``: throughput and latency under 1..N concurrent clients (localhost only).

Each (engine, batching) mode starts the real server command as a subprocess on a free localhost
port, then drives it with a fixed number of requests per client count — one real sentence per
request (Multi30k English for seq2seq; chat prompts for a language model), greedy search. Every
answer is checked against what the same engine answers one request at a time (the first mode's
single-client run), so lost (non-200) and wrong responses are counted, not assumed away.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import ConfigError, DataError
from .table import markdown_table

MULTI30K_TEST = Path("multi30k") / "test_2016_flickr.en.gz"


def read_sentences(path: str | Path, limit: int) -> list[str]:
    """The first ``limit`` non-empty lines of a text file (``.gz`` allowed)."""
    from itertools import islice

    from ..data.text import iter_lines

    lines = list(islice((line.strip() for line in iter_lines(path) if line.strip()), limit))
    if not lines:
        raise DataError(f"{path}: no sentences")
    return lines


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """``hybridformer serve`` in a subprocess on a free localhost port (stopped with SIGTERM)."""

    def __init__(self, checkpoint: str | Path, *, engine: str, batching: bool, threads: int, max_wait_ms: float,
                 max_batch_tokens: int) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "hybridformer", "serve", str(checkpoint), "--engine", engine,
                   "--port", str(self.port), "--threads", str(threads), "--max-wait-ms", str(max_wait_ms),
                   "--max-batch-tokens", str(max_batch_tokens), "--log-level", "warning",
                   "--batching" if batching else "--no-batching"]
        env = os.environ | {"OMP_NUM_THREADS": str(threads)}
        env.pop("HYBRIDFORMER_API_KEY", None)
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                        env=env)

    def wait_ready(self, timeout: float = 600.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ConfigError(f"the server exited ({self.process.returncode}): "
                                  f"{self.process.stderr.read().strip().splitlines()[-1:]}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise ConfigError(f"the server did not answer /health within {timeout:.0f} s")

    def peak_rss_mib(self) -> float:
        """Peak resident memory of the server process so far (Linux VmHWM)."""
        try:
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return float("nan")

    def generated_tokens(self) -> int:
        import httpx

        for line in httpx.get(self.url + "/metrics", timeout=10).text.splitlines():
            if line.startswith("hybridformer_generated_tokens_total "):
                return int(line.split()[1])
        return 0

    def stop(self) -> int:
        self.process.terminate()
        try:
            return self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def request_fn(url: str, lm: bool, max_tokens: int) -> Callable[[object, str], str | None]:
    """``send(client, sentence) -> output text`` (None when the answer is not a 200)."""

    def send(client, sentence: str) -> str | None:
        if lm:
            body = {"messages": [{"role": "user", "content": f"Translate to German: {sentence}"}],
                    "max_tokens": max_tokens, "temperature": 0}
            response = client.post(url + "/v1/chat/completions", json=body)
            return response.json()["choices"][0]["message"]["content"] if response.status_code == 200 else None
        response = client.post(url + "/v1/generate", json={"inputs": [sentence], "beam": 1})
        return response.json()["outputs"][0] if response.status_code == 200 else None

    return send


def drive(send: Callable, url: str, sentences: list[str], clients: int, requests: int,
          time_cap: float) -> dict:
    """``requests`` requests from ``clients`` concurrent clients; latencies, outputs by sentence, errors."""
    import httpx

    latencies: list[float] = []
    outputs: dict[int, list[str | None]] = {}
    errors = [0]
    lock, counter = threading.Lock(), iter(range(requests))
    start = time.monotonic()

    def worker() -> None:
        with httpx.Client(timeout=600) as client:
            while time.monotonic() - start < time_cap:
                with lock:
                    index = next(counter, None)
                if index is None:
                    return
                sentence_id = index % len(sentences)
                began = time.monotonic()
                try:
                    text = send(client, sentences[sentence_id])
                except (httpx.HTTPError, ValueError, KeyError):
                    text = None
                with lock:
                    latencies.append(time.monotonic() - began)
                    outputs.setdefault(sentence_id, []).append(text)
                    errors[0] += text is None

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"seconds": time.monotonic() - start, "latencies": latencies, "outputs": outputs, "errors": errors[0],
            "capped": len(latencies) < requests}


def summarize(run: dict, reference: dict[int, str | None]) -> dict:
    lat = sorted(run["latencies"])
    cuts = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) > 1 else lat * 99
    wrong = sum(1 for sid, texts in run["outputs"].items() for t in texts
                if t is not None and reference.get(sid) is not None and t != reference[sid])
    done = len(lat)
    return {"requests": done, "errors": run["errors"], "wrong": wrong, "capped": run["capped"],
            "seconds": round(run["seconds"], 3), "throughput_rps": round(done / run["seconds"], 3),
            "p50_ms": round(cuts[49] * 1000, 1), "p95_ms": round(cuts[94] * 1000, 1),
            "p99_ms": round(cuts[98] * 1000, 1)}


def run_load_test(checkpoint: str | Path, sentences: list[str], *, lm: bool, clients: list[int], requests: int,
                  engines: list[str], batching_modes: list[bool], threads: int = 1, max_wait_ms: float = 10.0,
                  max_batch_tokens: int = 4096, max_tokens: int = 32, time_cap: float = 600.0,
                  progress: Callable[[dict], None] | None = None) -> list[dict]:
    """One row per (engine, batching, clients): throughput, p50/p95/p99 latency, errors, wrong answers, memory."""
    rows: list[dict] = []
    for engine in engines:
        reference: dict[int, str | None] | None = None
        for batching in batching_modes:
            server = ServerProcess(checkpoint, engine=engine, batching=batching, threads=threads,
                                   max_wait_ms=max_wait_ms, max_batch_tokens=max_batch_tokens)
            try:
                server.wait_ready()
                send = request_fn(server.url, lm, max_tokens)
                for count in clients:
                    tokens_before = server.generated_tokens()
                    run = drive(send, server.url, sentences, count, requests, time_cap)
                    if reference is None:  # the first cell: this engine alone, as the truth for the rest
                        reference = {sid: texts[0] for sid, texts in run["outputs"].items()}
                    row = {"engine": engine, "batching": batching, "clients": count} | summarize(run, reference)
                    row["tokens_per_s"] = round((server.generated_tokens() - tokens_before) / run["seconds"], 1)
                    row["peak_rss_mib"] = round(server.peak_rss_mib(), 1)
                    rows.append(row)
                    if progress is not None:
                        progress(row)
            finally:
                row_exit = server.stop()
            if row_exit != 0:
                raise ConfigError(f"the {engine} server exited with status {row_exit} after SIGTERM")
    return rows


def markdown(rows: list[dict]) -> str:
    header = ["engine", "dynamic batching", "clients", "requests", "req/s", "tok/s", "p50 ms", "p95 ms", "p99 ms",
              "errors", "wrong", "peak RSS MiB"]
    cells = [[r["engine"], "on" if r["batching"] else "off", r["clients"],
              f"{r['requests']}{' (capped)' if r['capped'] else ''}", r["throughput_rps"], r["tokens_per_s"],
              r["p50_ms"], r["p95_ms"], r["p99_ms"], r["errors"], r["wrong"], r["peak_rss_mib"]] for r in rows]
    return markdown_table(header, cells, align="llrrrrrrrrrr") + "\n"


def write_results(rows: list[dict], out: str | Path, meta: dict) -> dict[str, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "results.json", "markdown": out / "results.md"}
    paths["json"].write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    paths["markdown"].write_text(markdown(rows))
    return paths
