"""``hybridformer bench ...``: attention scaling, layer-type cost, compression speed, throughput vs peers."""

from __future__ import annotations

from pathlib import Path

import typer

from ..bench import markdown_table, run_benchmark, write_outputs
from . import bench_conv, compress

app = typer.Typer(no_args_is_help=True, help="Benchmarks: speed and memory, measured, with peers in the same run.")
app.command("compress")(compress.bench_compress)
app.command("layers")(bench_conv.layers)

DEFAULT_MECHANISMS = ["full", "reference", "chunked", "sliding_window:window=512", "block_sparse", "linear",
                      "performer", "linformer:max_len=65536", "nystrom"]


@app.command("attention")
def attention(
    out: Path = typer.Option(..., "--out", help="Directory for results.json, results.md and scaling.png."),
    mechanisms: list[str] = typer.Option(DEFAULT_MECHANISMS, "--mechanisms", "-m",
                                         help="name[:key=value...]; repeat or comma-separate. 'flex' = FlexAttention."),
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
    names = [m for item in mechanisms for m in item.split(",") if m]
    sizes = [int(n) for item in lengths for n in item.split(",") if n]

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
