"""Load test of ``hybridformer serve``: throughput and latency under 1..N concurrent clients (localhost only).

Each (engine, batching) mode starts the real server command as a subprocess on a free localhost
port, then drives it with a fixed number of requests per client count, greedy search: one real sentence
per request for seq2seq (Multi30k English); for a language model, chat traffic of varied shape — each
request a prompt of consecutive sentences (``prompt_words``, drawn per request) and its own answer budget
(``max_tokens``), streamed, so that the time to its first token is measured. Every answer is checked
against what the same engine answers one request at a time (the first mode's single-client run), so lost
(non-200) and wrong responses are counted, not assumed away. The server's CPU time per cell is reported
beside the wall-clock figures, which a shared machine disturbs.
"""

from __future__ import annotations

import json
import os
import random
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

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server process has used so far (Linux /proc)."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
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


Workload = list[tuple[str, int]]  # (input text, answer budget) per request


def chat_workload(sentences: list[str], count: int, prompt_words: tuple[int, int], max_tokens: tuple[int, int],
                  seed: int = 0) -> Workload:
    """``count`` chat requests of varied shape, the same for every run: consecutive sentences (cycling) up to a
    word count drawn from ``prompt_words``, asked to be summarised, each with a budget drawn from ``max_tokens``."""
    rng, requests, at = random.Random(seed), [], 0
    for _ in range(count):
        words: list[str] = []
        target = rng.randint(*prompt_words)
        while len(words) < target:
            words += sentences[at % len(sentences)].split()
            at += 1
        requests.append(("Summarize this text in a few sentences:\n" + " ".join(words[:target]),
                         rng.randint(*max_tokens)))
    return requests


def request_fn(url: str, lm: bool) -> Callable[[object, str, int], tuple[str | None, float | None]]:
    """``send(client, text, max_tokens) -> (output text, seconds to its first token)`` (text None when the answer
    is not a 200). A language model's answer is streamed, so its first token's arrival is seen."""

    def send(client, text: str, max_tokens: int) -> tuple[str | None, float | None]:
        if not lm:
            response = client.post(url + "/v1/generate", json={"inputs": [text], "beam": 1})
            return (response.json()["outputs"][0] if response.status_code == 200 else None), None
        body = {"messages": [{"role": "user", "content": text}], "max_tokens": max_tokens, "temperature": 0,
                "stream": True}
        began, first, pieces = time.monotonic(), None, []
        with client.stream("POST", url + "/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                return None, None
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[6:])
                if "error" in event:
                    return None, None
                piece = event["choices"][0]["delta"].get("content") if event["choices"] else None
                if piece:
                    first = first if first is not None else time.monotonic() - began
                    pieces.append(piece)
        return "".join(pieces), first

    return send


def drive(send: Callable, url: str, workload: Workload, clients: int, requests: int,
          time_cap: float) -> dict:
    """``requests`` requests from ``clients`` concurrent clients; latencies, times to first token, outputs by
    request of the workload, errors."""
    import httpx

    latencies: list[float] = []
    first_tokens: list[float] = []
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
                sentence_id = index % len(workload)
                began = time.monotonic()
                try:
                    text, first = send(client, *workload[sentence_id])
                except (httpx.HTTPError, ValueError, KeyError):
                    text, first = None, None
                with lock:
                    latencies.append(time.monotonic() - began)
                    if first is not None:
                        first_tokens.append(first)
                    outputs.setdefault(sentence_id, []).append(text)
                    errors[0] += text is None

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"seconds": time.monotonic() - start, "latencies": latencies, "first_tokens": first_tokens,
            "outputs": outputs, "errors": errors[0], "capped": len(latencies) < requests}


def percentiles(values: list[float]) -> list[float]:
    """The 1st..99th percentiles (inclusive method)."""
    values = sorted(values)
    return statistics.quantiles(values, n=100, method="inclusive") if len(values) > 1 else values * 99


def summarize(run: dict, reference: dict[int, str | None]) -> dict:
    lat = run["latencies"]
    cuts = percentiles(lat)
    ttft = percentiles(run["first_tokens"]) if run["first_tokens"] else None
    wrong = sum(1 for sid, texts in run["outputs"].items() for t in texts
                if t is not None and reference.get(sid) is not None and t != reference[sid])
    done = len(lat)
    return {"requests": done, "errors": run["errors"], "wrong": wrong, "capped": run["capped"],
            "seconds": round(run["seconds"], 3), "throughput_rps": round(done / run["seconds"], 3),
            "p50_ms": round(cuts[49] * 1000, 1), "p95_ms": round(cuts[94] * 1000, 1),
            "p99_ms": round(cuts[98] * 1000, 1),
            "ttft_p50_ms": None if ttft is None else round(ttft[49] * 1000, 1),
            "ttft_p95_ms": None if ttft is None else round(ttft[94] * 1000, 1)}


def run_load_test(checkpoint: str | Path, workload: Workload, *, lm: bool, clients: list[int], requests: int,
                  engines: list[str], batching_modes: list[bool], threads: int = 1, max_wait_ms: float = 10.0,
                  max_batch_tokens: int = 4096, time_cap: float = 600.0,
                  progress: Callable[[dict], None] | None = None) -> list[dict]:
    """One row per (engine, batching, clients): throughput, p50/p95/p99 latency, time to first token (LM),
    errors, wrong answers, server CPU time, memory."""
    rows: list[dict] = []
    for engine in engines:
        reference: dict[int, str | None] | None = None
        for batching in batching_modes:
            server = ServerProcess(checkpoint, engine=engine, batching=batching, threads=threads,
                                   max_wait_ms=max_wait_ms, max_batch_tokens=max_batch_tokens)
            try:
                server.wait_ready()
                send = request_fn(server.url, lm)
                for count in clients:
                    tokens_before, cpu_before = server.generated_tokens(), server.cpu_seconds()
                    run = drive(send, server.url, workload, count, requests, time_cap)
                    if reference is None:  # the first cell: this engine alone, as the truth for the rest
                        reference = {sid: texts[0] for sid, texts in run["outputs"].items()}
                    row = {"engine": engine, "batching": batching, "clients": count} | summarize(run, reference)
                    tokens = server.generated_tokens() - tokens_before
                    row["tokens_per_s"] = round(tokens / run["seconds"], 1)
                    row["cpu_s"] = round(server.cpu_seconds() - cpu_before, 2)
                    row["tokens_per_cpu_s"] = round(tokens / max(row["cpu_s"], 1e-9), 1)
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
    header = ["engine", "batching", "clients", "requests", "req/s", "tok/s", "tok/CPU-s", "p50 ms", "p95 ms",
              "p99 ms", "TTFT p50 ms", "TTFT p95 ms", "errors", "wrong", "peak RSS MiB"]
    cells = [[r["engine"], "on" if r["batching"] else "off", r["clients"],
              f"{r['requests']}{' (capped)' if r['capped'] else ''}", r["throughput_rps"], r["tokens_per_s"],
              r["tokens_per_cpu_s"], r["p50_ms"], r["p95_ms"], r["p99_ms"], r["ttft_p50_ms"] or "-",
              r["ttft_p95_ms"] or "-", r["errors"], r["wrong"], r["peak_rss_mib"]] for r in rows]
    return markdown_table(header, cells, align="llrrrrrrrrrrrrr") + "\n"


def write_results(rows: list[dict], out: str | Path, meta: dict) -> dict[str, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "results.json", "markdown": out / "results.md"}
    paths["json"].write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    paths["markdown"].write_text(markdown(rows))
    return paths
