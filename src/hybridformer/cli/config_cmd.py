"""``hybridformer config check``: validate a model config or a training recipe and print it in full."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..errors import ConfigError

app = typer.Typer(no_args_is_help=True, help="Inspect and validate configs.")

RECIPE_SECTIONS = ("model", "data", "train")


@app.command("check")
def check(
    config: Path = typer.Argument(None, help="YAML/JSON model config, or a recipe with model/data/train sections "
                                  "(configs/*.yaml); defaults when omitted."),
    set_: list[str] = typer.Option([], "--set", help="Override a key, e.g. --set decoder.layers=6 "
                                   "(in a recipe: --set model.decoder.layers=6)"),
) -> None:
    """Validate CONFIG (plus overrides) and print it complete, defaults filled in.

    The model is also built on PyTorch's meta device (no memory, no weights), so a config that
    passes here is one that training builds.

    Examples:

      hybridformer config check --set position=rope --set kv_heads=1

      hybridformer config check configs/multi30k-transformer.yaml --set train.lr=3e-4
    """
    import torch

    from ..config import ExperimentConfig, ModelConfig, apply_overrides, parse_config, read_config_file
    from ..models import build_model
    from ..train.setup import fine_tune_defaults

    data = apply_overrides(read_config_file(config) if config is not None else {}, list(set_))
    if any(key in data for key in RECIPE_SECTIONS):
        recipe = parse_config(ExperimentConfig, fine_tune_defaults(data))
        model_cfg: ModelConfig = recipe.model
        shown = recipe.model_dump()
    else:
        model_cfg = parse_config(ModelConfig, data)
        shown = model_cfg.model_dump()
    try:
        with torch.device("meta"):
            build_model(model_cfg)
    except (RuntimeError, OverflowError, TypeError) as exc:  # e.g. "Storage size calculation overflowed"
        raise ConfigError(f"model: too large to build ({str(exc).splitlines()[0][:160]})") from None
    typer.echo(json.dumps(shown, indent=2))
