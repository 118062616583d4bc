"""``hybridformer serve``: an HTTP server for one checkpoint (FastAPI + uvicorn, continuous or dynamic batching)."""

from __future__ import annotations

import logging
import os
import sys

import typer

from ..errors import ConfigError
from .generate import ADAPTER, COMPILE


def serve_cmd(
    checkpoint: str = typer.Argument(..., help="Checkpoint directory, or a CTranslate2 export (--engine ct2)."),
    engine: str = typer.Option("torch", "--engine", help="torch | ct2 (CTranslate2; a checkpoint is exported "
                               "once into CKPT.ct2-<quantization> beside it)."),
    quantization: str = typer.Option(None, "--quantization", help="ct2: float32 | int8 | int8_float32 | bfloat16."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (default: this machine only)."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    max_batch_tokens: int = typer.Option(4096, "--max-batch-tokens", min=1,
                                         help="Continuous batching: tokens the running batch holds (prompts and "
                                         "outputs so far) when a request joins; dynamic: input tokens per batch."),
    max_batch_rows: int = typer.Option(32, "--max-batch-rows", min=1,
                                       help="Continuous batching: rows (inputs) in the running batch."),
    max_wait_ms: float = typer.Option(5.0, "--max-wait-ms", min=0.0,
                                      help="How long a request waits for others to batch with."),
    batching: bool = typer.Option(True, "--batching/--no-batching", help="Batch requests: continuously where the "
                                  "engine joins rows mid-flight (torch, language models), else dynamically; off: one "
                                  "request at a time."),
    api_key: str = typer.Option(None, "--api-key", help="Require 'Authorization: Bearer KEY' on every route but "
                                "/health (default: $HYBRIDFORMER_API_KEY, else no key)."),
    max_inputs: int = typer.Option(64, "--max-inputs", min=1, help="Inputs per request (more: 413)."),
    max_input_tokens: int = typer.Option(512, "--max-input-tokens", min=1, help="Tokens per input (more: 413)."),
    max_new_tokens: int = typer.Option(512, "--max-new-tokens", min=1, help="Output tokens per input (more: 413)."),
    max_body_bytes: int = typer.Option(1 << 20, "--max-body-bytes", min=1, help="Request body size (more: 413)."),
    threads: int = typer.Option(None, "--threads", min=1, help="CPU threads for decoding (default: torch's)."),
    device: str = typer.Option("cpu", "--device", help="torch device (torch engine), or cpu/cuda (ct2)."),
    log_level: str = typer.Option("info", "--log-level", help="critical | error | warning | info (an access line "
                                  "per request) | debug | trace."),
    log_prompts: bool = typer.Option(False, "--log-prompts", help="Show prompt text in the access log (off: "
                                     "prompts are your users' data)."),
    drain_timeout: float = typer.Option(30.0, "--drain-timeout", min=0.0, help="SIGTERM: seconds the requests in "
                                        "flight get to finish (an idle server exits at once)."),
    limit_concurrency: int = typer.Option(None, "--limit-concurrency", min=1, help="Open connections and requests "
                                          "at once (more: 503 or closed; default and ceiling: the descriptor limit "
                                          "minus a reserve)."),
    timeout_keep_alive: int = typer.Option(5, "--timeout-keep-alive", min=1, help="Close an idle keep-alive "
                                           "connection after this many seconds."),
    header_timeout: float = typer.Option(10.0, "--header-timeout", min=0.1, help="Close a connection that has not "
                                         "sent its request headers within this many seconds."),
    body_timeout: float = typer.Option(30.0, "--body-timeout", min=0.1, help="Answer 408 when a request body has "
                                       "not arrived within this many seconds."),
    adapter: str = ADAPTER,
    compile_: bool = COMPILE,
) -> None:
    """Serve a model over HTTP: POST /v1/generate; for language models also the OpenAI routes
    /v1/completions and /v1/chat/completions (stream: true = server-sent events); GET /health, /metrics.

    Examples:
      hybridformer serve runs/mt/checkpoints/best --port 8000
      hybridformer serve runs/mt/checkpoints/best --engine ct2 --quantization int8 --max-wait-ms 10
      HYBRIDFORMER_API_KEY=secret hybridformer serve models/smollm2 --host 0.0.0.0
      hybridformer serve models/smollm2 --adapter runs/lora/checkpoints/best     # base + LoRA adapter
    """
    try:
        import torch

        from ..serve import ServeSettings, serve
    except ImportError as exc:
        raise ConfigError(f"hybridformer serve needs FastAPI and uvicorn ({exc.name} is missing): "
                          "pip install 'hybridformer[serve]'") from None
    if threads is not None:
        torch.set_num_threads(threads)
    settings = ServeSettings(api_key=api_key, max_batch_tokens=max_batch_tokens, max_batch_rows=max_batch_rows,
                             max_wait_ms=max_wait_ms,
                             batching=batching, max_body_bytes=max_body_bytes, max_inputs=max_inputs,
                             max_input_tokens=max_input_tokens, max_new_tokens=max_new_tokens, engine=engine,
                             log_prompts=log_prompts, drain_timeout=drain_timeout, max_connections=limit_concurrency,
                             keep_alive_timeout=timeout_keep_alive, header_timeout=header_timeout,
                             body_timeout=body_timeout)
    serve(checkpoint, settings, host=host, port=port, quantization=quantization, device=device, log_level=log_level,
          adapter=adapter, compile=compile_)
    # Shut down cleanly, every answer sent: exit now rather than through the interpreter's teardown of torch and
    # friends, which takes seconds on a busy machine (an idle server must stop at once on SIGTERM).
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
