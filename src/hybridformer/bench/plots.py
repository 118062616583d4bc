"""Plots for benchmark results (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_scaling(results: list[dict[str, Any]], path: Path, *, title: str = "") -> None:
    """Log-log time and peak memory vs length, one line per mechanism; capped points are left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_time, ax_mem) = plt.subplots(1, 2, figsize=(12, 4.5))
    for label in dict.fromkeys(r["label"] for r in results):
        points = sorted((r for r in results if r["label"] == label and r["status"] == "ok"), key=lambda r: r["length"])
        if not points:
            continue
        lengths = [p["length"] for p in points]
        ax_time.plot(lengths, [p["time_s"] for p in points], marker="o", label=label)
        ax_mem.plot(lengths, [max(p["peak_mib"], 1.0) for p in points], marker="o", label=label)
    for ax, ylabel in ((ax_time, "median time (s)"), (ax_mem, "peak RSS increase (MiB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    ax_time.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
