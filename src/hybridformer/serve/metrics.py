"""Prometheus text-format metrics (https://prometheus.io/docs/instrumenting/exposition_formats/), kept in-process."""

from __future__ import annotations

import threading
from collections import defaultdict

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets, self.counts, self.total, self.count = buckets, [0] * len(buckets), 0.0, 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
        self.total += value
        self.count += 1

    def lines(self, name: str, labels: str = "") -> list[str]:
        sep = "," if labels else ""
        out = [f'{name}_bucket{{{labels}{sep}le="{bound:g}"}} {n}' for bound, n in zip(self.buckets, self.counts,
                                                                                    strict=True)]
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.count}')
        suffix = f"{{{labels}}}" if labels else ""
        return out + [f"{name}_sum{suffix} {self.total:.6f}", f"{name}_count{suffix} {self.count}"]


class Metrics:
    """Requests and errors by route and status, latency, time to first token, prompt (prefill) and generated (decode)
    tokens, decode batch sizes, in-flight requests, queued and running rows, and the batching mode."""

    def __init__(self, mode: str = "dynamic") -> None:
        self.lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.latency: dict[str, Histogram] = defaultdict(lambda: Histogram(LATENCY_BUCKETS))
        self.batch_inputs = Histogram(BATCH_BUCKETS)
        self.batch_requests = Histogram(BATCH_BUCKETS)
        self.ttft = Histogram(LATENCY_BUCKETS)
        self.generated_tokens = self.prefill_tokens = 0
        self.in_flight = 0
        self.queued = 0  # rows waiting for the decoder
        self.running = 0  # rows in the batch being decoded now
        self.mode = mode  # how requests share the decoder: continuous | dynamic | off

    def request(self, route: str, status: int, seconds: float) -> None:
        with self.lock:
            self.requests[(route, status)] += 1
            self.latency[route].observe(seconds)

    def batch(self, requests: int, inputs: int, prompt_tokens: int, tokens: int) -> None:
        with self.lock:
            self.batch_requests.observe(requests)
            self.batch_inputs.observe(inputs)
            self.prefill_tokens += prompt_tokens
            self.generated_tokens += tokens

    def decoded(self, tokens: int) -> None:
        """Output tokens of a request that left the running batch (continuous batching)."""
        with self.lock:
            self.generated_tokens += tokens

    def first_token(self, seconds: float) -> None:
        with self.lock:
            self.ttft.observe(seconds)

    def render(self) -> str:
        with self.lock:
            lines = ["# HELP hybridformer_requests_total HTTP requests by route and status code.",
                     "# TYPE hybridformer_requests_total counter"]
            lines += [f'hybridformer_requests_total{{route="{r}",status="{s}"}} {n}'
                      for (r, s), n in sorted(self.requests.items())]
            lines += ["# HELP hybridformer_request_errors_total Requests answered with a 4xx or 5xx status.",
                      "# TYPE hybridformer_request_errors_total counter"]
            errors: dict[str, int] = defaultdict(int)
            for (route, status), n in self.requests.items():
                if status >= 400:
                    errors[route] += n
            lines += [f'hybridformer_request_errors_total{{route="{r}"}} {n}' for r, n in sorted(errors.items())]
            lines += ["# HELP hybridformer_request_latency_seconds Time from request to response.",
                      "# TYPE hybridformer_request_latency_seconds histogram"]
            for route, hist in sorted(self.latency.items()):
                lines += hist.lines("hybridformer_request_latency_seconds", f'route="{route}"')
            lines += ["# HELP hybridformer_time_to_first_token_seconds From a request's arrival in the queue to its "
                      "first output token.", "# TYPE hybridformer_time_to_first_token_seconds histogram",
                      *self.ttft.lines("hybridformer_time_to_first_token_seconds"),
                      "# HELP hybridformer_generated_tokens_total Output tokens produced (decode).",
                      "# TYPE hybridformer_generated_tokens_total counter",
                      f"hybridformer_generated_tokens_total {self.generated_tokens}",
                      "# HELP hybridformer_prefill_tokens_total Prompt and source tokens read (prefill).",
                      "# TYPE hybridformer_prefill_tokens_total counter",
                      f"hybridformer_prefill_tokens_total {self.prefill_tokens}",
                      "# HELP hybridformer_batch_inputs Inputs decoded (dynamic) or prefilled (continuous) together.",
                      "# TYPE hybridformer_batch_inputs histogram",
                      *self.batch_inputs.lines("hybridformer_batch_inputs"),
                      "# HELP hybridformer_batch_requests Requests merged into one batch (continuous: one prefill).",
                      "# TYPE hybridformer_batch_requests histogram",
                      *self.batch_requests.lines("hybridformer_batch_requests"),
                      "# HELP hybridformer_in_flight Requests being served now.",
                      "# TYPE hybridformer_in_flight gauge", f"hybridformer_in_flight {self.in_flight}",
                      "# HELP hybridformer_queue_depth Inputs (rows) waiting for the decoder.",
                      "# TYPE hybridformer_queue_depth gauge", f"hybridformer_queue_depth {self.queued}",
                      "# HELP hybridformer_running_rows Inputs (rows) in the batch being decoded now.",
                      "# TYPE hybridformer_running_rows gauge", f"hybridformer_running_rows {self.running}",
                      "# HELP hybridformer_batching_mode How requests share the decoder (1 = this mode runs).",
                      "# TYPE hybridformer_batching_mode gauge", f'hybridformer_batching_mode{{mode="{self.mode}"}} 1']
        return "\n".join(lines) + "\n"
