"""``hybridformer bench ...``: attention scaling, layer-type cost, compression speed, throughput vs peers."""

from __future__ import annotations

from pathlib import Path

import typer

from ..bench import markdown_table, run_benchmark, write_outputs
from . import bench_conv, compress
from .options import parse_list, split_list

app = typer.Typer(no_args_is_help=True, help="Benchmarks: speed and memory, measured, with peers in the same run.")
app.command("compress")(compress.bench_compress)
app.command("layers")(bench_conv.layers)

DEFAULT_MECHANISMS = ["full", "reference", "chunked", "sliding_window:window=512", "block_sparse", "linear",
                      "performer", "linformer:max_len=65536", "nystrom"]


@app.command("attention")
def attention(
    out: Path = typer.Option(..., "--out", help="Directory for results.json, results.md and scaling.png."),
    mechanisms: list[str] = typer.Option(DEFAULT_MECHANISMS, "--mechanisms", "-m",
                                         help="name[:key=value...]; repeat or comma-separate. 'flex' = FlexAttention. "
                                         "A bias=alibi|t5|none option overrides --bias for that mechanism."),
    lengths: list[str] = typer.Option(["1024,2048,4096,8192,16384,32768,65536"], "--lengths", "-l",
                                      help="Sequence lengths; repeat or comma-separate."),
    backward: bool = typer.Option(False, "--backward/--forward-only", help="Time forward + backward."),
    causal: bool = typer.Option(True, "--causal/--non-causal"),
    bias: str = typer.Option("none", "--bias", help="Score bias: none, alibi or t5."),
    batch: int = typer.Option(1, "--batch"),
    heads: int = typer.Option(8, "--heads"),
    head_dim: int = typer.Option(64, "--head-dim"),
    repeats: int = typer.Option(3, "--repeats", help="Timed runs per point (median reported)."),
    time_cap: float = typer.Option(300.0, "--time-cap", help="Seconds per point before it is reported as capped."),
    memory_cap: float = typer.Option(8.0, "--memory-cap-gb", help="Address-space cap per point (GiB)."),
) -> None:
    """Median time and peak memory of each mechanism at each length, in fp32 on this machine.

    Example:

      hybridformer bench attention -m full,chunked,sliding_window:window=256 -l 1024,4096 --backward --out runs/b
    """
    names = split_list(mechanisms)
    sizes = parse_list(lengths, int, option="--lengths", example="1024,4096")

    def progress(point: dict) -> None:
        shown = f"{point['time_s']:.3f} s, {point['peak_mib']:.0f} MiB" if point["status"] == "ok" else point["status"]
        typer.echo(f"{point['label']:<40} L={point['length']:<6} {shown}", err=True)

    results = run_benchmark(names, sizes, causal=causal, backward=backward, bias=bias, batch=batch, heads=heads,
                            head_dim=head_dim, repeats=repeats, time_cap_s=time_cap, memory_cap_gb=memory_cap,
                            progress=progress)
    title = (f"{'causal' if causal else 'non-causal'} {'fwd+bwd' if backward else 'fwd'}, bias={bias}, "
             f"B={batch}, heads={heads}, head_dim={head_dim}, fp32")
    paths = write_outputs(results, out, title=title)
    typer.echo(markdown_table(results))
    typer.echo(f"wrote {paths['json']}, {paths['markdown']}, {paths['plot']}")


@app.command("throughput")
def throughput(
    config: Path = typer.Argument(None, help="Model config (YAML; a `model:` section or ModelConfig keys). "
                                  "Without it: the built-in --sizes."),
    out: Path = typer.Option(..., "--out", help="Directory for throughput.json and throughput.md."),
    sizes: str = typer.Option("default,d512,lm1024", "--sizes", help="Comma-separated: default, d512, lm1024, tiny."),
    peers: str = typer.Option(None, "--peers", help="Comma-separated peers (default: all; \"\" = none)."),
    repeats: int = typer.Option(5, "--repeats", help="Timed rounds per measurement (median reported).", min=1),
    steps: int = typer.Option(64, "--steps", help="New tokens per generated sequence.", min=1),
    beams: int = typer.Option(5, "--beams", help="Beam size for the beam-search measurement.", min=1),
    threads: int = typer.Option(None, "--threads", help="torch threads (default: torch's choice)."),
    set_: list[str] = typer.Option([], "--set", help="Override a model key of CONFIG, e.g. --set position=rope"),
) -> None:
    """Training and generation tokens/s of hybridformer vs torch.nn.Transformer, HF and x-transformers.

    All contenders are timed in one process, interleaved, median of --repeats; the training step's
    achieved FLOP/s is reported as a share of this machine's measured fp32 GEMM peak.

    Example: hybridformer bench throughput --sizes default --out runs/throughput
    """
    from ..bench.throughput import markdown, run, write
    from ..config import ModelConfig, apply_overrides, parse_config, read_config_file

    model_cfg = None
    if config is not None:
        data = read_config_file(config)
        model_cfg = parse_config(ModelConfig, apply_overrides(data.get("model", data), set_), prefix="model")
    report = run(split_list(sizes), split_list(peers) if peers is not None else None,
                 repeats=repeats, steps=steps, beams=beams, threads=threads, config=model_cfg)
    json_path, _ = write(report, out)
    typer.echo(markdown(report))
    typer.echo(f"\nwrote {json_path} and throughput.md")
