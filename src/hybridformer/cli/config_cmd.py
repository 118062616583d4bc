"""``hybridformer config check``: validate a model config and print it in full."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..config import ModelConfig, load_config

app = typer.Typer(no_args_is_help=True, help="Inspect and validate configs.")


@app.command("check")
def check(
    config: Path = typer.Argument(None, help="YAML/JSON model config (defaults when omitted)."),
    set_: list[str] = typer.Option([], "--set", help="Override a key, e.g. --set decoder.layers=6"),
) -> None:
    """Validate CONFIG (plus overrides) and print the complete model config with defaults filled in.

    Example: hybridformer config check --set position=rope --set kv_heads=1
    """
    cfg: ModelConfig = load_config(config, set_)
    typer.echo(json.dumps(cfg.model_dump(), indent=2))
