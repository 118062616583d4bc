"""HTTP serving: a FastAPI app with dynamic batching and OpenAI-compatible routes, run by uvicorn."""

from .app import create_app
from .requests import ServeSettings
from .server import build_server, serve

__all__ = ["ServeSettings", "create_app", "build_server", "serve"]
