"""HTTP serving: a FastAPI app with dynamic batching and OpenAI-compatible routes, run by uvicorn."""

from .app import ServeSettings, create_app
from .server import build_server, serve

__all__ = ["ServeSettings", "create_app", "build_server", "serve"]
