"""``hybridformer serve``: load one model, then serve it with uvicorn until SIGTERM/SIGINT.

SIGTERM stops accepting connections, lets the requests in flight finish within ``drain_timeout``
seconds (uvicorn's graceful shutdown, then the batcher drains its queue; past the deadline what is
left is answered 503) and exits 0 — at once when idle. Slow and hostile clients meet uvicorn's own
limits (keep-alive timeout, concurrency cap, header size) plus a header deadline and a connection
cap below the descriptor limit (:mod:`.protocol`).
"""

from __future__ import annotations

import copy
import os
import signal
from pathlib import Path

import uvicorn
from uvicorn.config import LOG_LEVELS, LOGGING_CONFIG

from ..engines import load_engine
from ..errors import ConfigError
from .app import create_app
from .protocol import REFUSALS, connection_limits, guarded_protocol
from .requests import ServeSettings

API_KEY_ENV = "HYBRIDFORMER_API_KEY"


def check_settings(settings: ServeSettings, port: int, log_level: str) -> None:
    """Refuse, before the model loads, what would start a server that cannot keep its promises."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be in 0..65535, got {port}")
    if log_level not in LOG_LEVELS:
        raise ConfigError(f"--log-level must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")
    key = settings.api_key
    if key is not None and not key.strip():
        raise ConfigError("--api-key (or $HYBRIDFORMER_API_KEY) is empty: that would serve without authentication; "
                          "give a key, or leave both out to serve without one")
    if key is not None and not (key.isascii() and key.isprintable()):
        raise ConfigError("--api-key must be printable ASCII: HTTP headers carry nothing else, so such a key "
                          "could never authenticate")


def logging_config(log_level: str) -> dict:
    """uvicorn's logging configuration, with our access lines and refusals beside its own (refusals rate-limited)."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"refusals": {"()": "hybridformer.serve.protocol.RateLimited", "templates": REFUSALS}}
    config["loggers"]["uvicorn.error"]["filters"] = ["refusals"]
    config["loggers"]["asyncio"] = {"filters": ["refusals"]}  # its accept() errors, should descriptors run out
    config["loggers"]["hybridformer.serve"] = {"handlers": ["default"], "level": log_level.upper(),
                                               "propagate": False, "filters": ["refusals"]}
    return config


def build_server(checkpoint: str | Path, settings: ServeSettings, *, host: str = "127.0.0.1", port: int = 8000,
                 quantization: str | None = None, device: str = "cpu", log_level: str = "info",
                 adapter: str | Path | None = None, compile: bool = False):
    """A ready ``uvicorn.Server`` for ``checkpoint`` (call ``.run()``; tests run it in a thread)."""
    check_settings(settings, port, log_level)
    decoder = load_engine(checkpoint, device, engine=settings.engine, quantization=quantization, adapter=adapter,
                          compile=compile)
    settings.model_name = Path(checkpoint).name if settings.model_name == "hybridformer" else settings.model_name
    app = create_app(decoder, settings)
    cap, backlog = connection_limits(settings.max_connections)  # over the cap: closed at once (requests: 503)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, log_config=logging_config(log_level),
                            access_log=False, timeout_graceful_shutdown=settings.drain_timeout,
                            limit_concurrency=cap + 1, backlog=backlog, timeout_keep_alive=settings.keep_alive_timeout,
                            http=guarded_protocol(settings.header_timeout, cap))
    return uvicorn.Server(config)


def serve(checkpoint: str | Path, settings: ServeSettings, **options) -> None:
    """Serve until a signal: SIGTERM (or SIGINT) -> finish in-flight requests, return (the CLI exits 0)."""
    if settings.api_key is None:
        settings.api_key = os.environ.get(API_KEY_ENV)
    server = build_server(checkpoint, settings, **options)
    previous = signal.signal(signal.SIGTERM, lambda *_: None)  # uvicorn re-raises SIGTERM after its graceful exit
    try:
        server.run()
    except SystemExit:  # uvicorn exits 3 when it cannot start (e.g. the port is taken)
        if server.started:
            raise
        raise ConfigError(f"cannot serve on {options.get('host', '127.0.0.1')}:{options.get('port', 8000)}: the "
                          "address is in use or not available here; choose another --port or --host") from None
    finally:
        signal.signal(signal.SIGTERM, previous)
