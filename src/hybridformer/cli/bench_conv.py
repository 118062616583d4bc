"""``hybridformer bench layers``: cost of each layer type side by side (docs/conv.md)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import typer

from ..bench.layers import bench_layers, markdown_table
from ..blocks import LAYERS
from ..errors import ConfigError
from .options import parse_list, split_list


def layers(
    layer_types: str = typer.Option(",".join(LAYERS), "--layers", help="Comma-separated layer types."),
    d_models: str = typer.Option("256,512", "--d-models", help="Comma-separated model widths."),
    lengths: str = typer.Option("128,1024", "--lengths", help="Comma-separated sequence lengths."),
    batch: int = typer.Option(1, help="Sequences per pass."),
    causal: bool = typer.Option(False, "--causal/--bidirectional", help="Decoder (causal) or encoder layers."),
    kernel_size: int = typer.Option(15, help="Convolution kernel width (conv.kernel_size)."),
    repeats: int = typer.Option(3, help="Timed passes per measurement (the fastest is reported), after one warm-up."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    threads: int = typer.Option(0, help="torch CPU threads (0 = leave torch's default)."),
    out: Path = typer.Option(None, help="Directory for layers.json and layers.md."),
) -> None:
    """Parameters, forward+backward time per token and peak memory of one layer of each type.

    Example: hybridformer bench layers --d-models 256,512 --lengths 128,1024 --out bench/layers
    """
    names = split_list(layer_types)
    unknown = [name for name in names if name not in LAYERS]
    if unknown:
        raise ConfigError(f"--layers: unknown layer type(s) {', '.join(unknown)}; allowed: {', '.join(LAYERS)}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda requested but no CUDA device is available")
    if threads:
        torch.set_num_threads(threads)
    results = bench_layers(names, parse_list(d_models, int, option="--d-models", example="256,512"),
                           parse_list(lengths, int, option="--lengths", example="256,1024"), batch=batch, causal=causal,
                           repeats=repeats, kernel_size=kernel_size, device=device)
    table = markdown_table(results)
    typer.echo(table)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        meta = {"device": device, "threads": torch.get_num_threads(), "torch": torch.__version__}
        (out / "layers.json").write_text(json.dumps({"meta": meta, "results": [r.as_dict() for r in results]},
                                                    indent=2))
        (out / "layers.md").write_text(table + "\n")
        typer.echo(f"wrote {out / 'layers.json'} and {out / 'layers.md'}")
