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


def plot_recall(result: dict[str, Any], path: Path) -> None:
    """Recall accuracy heatmaps, one per task: depth of the key (rows) by prompt length (columns)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks, lengths, depths = result["tasks"], result["lengths"], result["depths"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(1.2 + 1.1 * len(lengths) * len(tasks), 1.2 + 0.45 * len(depths)),
                             squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        grid = [[float("nan")] * len(lengths) for _ in depths]
        for cell in result["cells"]:
            if cell["task"] == task and cell["status"] == "ok":
                grid[depths.index(cell["depth"])][lengths.index(cell["length"])] = 100 * cell["accuracy"]
        image = ax.imshow(grid, vmin=0, vmax=100, cmap="RdYlGn", aspect="auto")
        for row, values in enumerate(grid):
            for col, value in enumerate(values):
                ax.text(col, row, "—" if value != value else f"{value:.0f}", ha="center", va="center", fontsize=8)
        ax.set_xticks(range(len(lengths)), [f"{n:,}" for n in lengths])
        ax.set_yticks(range(len(depths)), [f"{d:g}" for d in depths])
        ax.set_xlabel("prompt tokens")
        ax.set_ylabel("depth of the key")
        ax.set_title(f"{task}: {Path(result['checkpoint']).name}", fontsize=9)
    fig.colorbar(image, ax=axes[0].tolist(), label="recall %")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
