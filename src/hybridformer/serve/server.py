"""``hybridformer serve``: load one model, then serve it with uvicorn until SIGTERM/SIGINT.

SIGTERM stops accepting connections, lets the requests in flight finish (uvicorn's graceful
shutdown, then the batcher drains its queue) and exits 0.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import uvicorn

from ..errors import ConfigError
from .app import ServeSettings, create_app
from .engine import load_engine

API_KEY_ENV = "HYBRIDFORMER_API_KEY"


def build_server(checkpoint: str | Path, settings: ServeSettings, *, host: str = "127.0.0.1", port: int = 8000,
                 quantization: str | None = None, device: str = "cpu", log_level: str = "info",
                 adapter: str | Path | None = None):
    """A ready ``uvicorn.Server`` for ``checkpoint`` (call ``.run()``; tests run it in a thread)."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be in 0..65535, got {port}")
    decoder = load_engine(checkpoint, engine=settings.engine, quantization=quantization, device=device,
                          adapter=adapter)
    settings.model_name = Path(checkpoint).name if settings.model_name == "hybridformer" else settings.model_name
    app = create_app(decoder, settings)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=None,
                            access_log=log_level == "debug")
    return uvicorn.Server(config)


def serve(checkpoint: str | Path, settings: ServeSettings, **options) -> None:
    """Serve until a signal: SIGTERM (or SIGINT) -> finish in-flight requests, return (the CLI exits 0)."""
    settings.api_key = settings.api_key or os.environ.get(API_KEY_ENV) or None
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
