"""``hybridformer average`` and ``hybridformer merge``: fuse checkpoints into one checkpoint directory."""

from __future__ import annotations

import inspect
from pathlib import Path

import typer

from ..errors import ConfigError
from ..names import MERGE_METHOD_HELP, MERGE_METHODS
from ..outputs import prepare_output_dir
from .options import parse_assignments, parse_weights


def average(
    checkpoints: list[Path] = typer.Argument(..., help="Checkpoint directories, or one RUN_DIR with --last."),
    out: Path = typer.Option(..., "--out", help="New checkpoint directory to write (written atomically)."),
    last: int = typer.Option(None, "--last", help="Average the N highest step checkpoints of RUN_DIR."),
    ema: bool = typer.Option(False, "--ema", help="Export RUN_DIR's EMA weights (train.ema_decay) instead."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing checkpoint at --out."),
) -> None:
    """Average checkpoints of one architecture, streaming tensor by tensor, or export a run's EMA weights.

    Examples:

      hybridformer average runs/a/checkpoints/step-009000 runs/a/checkpoints/step-010000 --out runs/a/avg

      hybridformer average --last 5 runs/a --out runs/a/avg5

      hybridformer average --ema runs/a --out runs/a/ema-export
    """
    from ..fusion import average_checkpoints, last_checkpoints
    from ..train import RunDir, export_ema

    if ema:
        if last is not None or len(checkpoints) != 1:
            raise ConfigError("--ema takes exactly one RUN_DIR (and no --last): it exports the average the "
                              "trainer kept during training")
        prepare_output_dir(out, overwrite=overwrite, inputs=[RunDir(checkpoints[0]).ema])
        written = export_ema(checkpoints[0], out)
        typer.echo(f"exported the EMA weights of {checkpoints[0]} -> {written}")
        return
    if last is not None:
        if len(checkpoints) != 1:
            raise ConfigError(f"--last {last} takes exactly one RUN_DIR, got {len(checkpoints)} paths")
        checkpoints = last_checkpoints(checkpoints[0], last)
    prepare_output_dir(out, overwrite=overwrite, inputs=checkpoints)
    written = average_checkpoints(checkpoints, out)
    typer.echo(f"averaged {len(checkpoints)} checkpoints ({', '.join(p.name for p in checkpoints)}) -> {written}")


def merge(
    checkpoints: list[Path] = typer.Argument(None, help="Checkpoint directories to merge (one architecture); with "
                                             "--adapter or --fold, the base the adapters apply to (default: the "
                                             "one they name)."),
    method: str = typer.Option(None, "--method", help=f"One of: {', '.join(MERGE_METHODS)} (their options are listed "
                               "above)."),
    out: Path = typer.Option(..., "--out", help="New checkpoint directory to write (written atomically)."),
    base: Path = typer.Option(None, "--base", help="Shared base checkpoint (methods that take --base, above)."),
    weights: str = typer.Option(None, "--weights", help="Weights: 0.7,0.3 or @FILE (tune-weights)."),
    density: float = typer.Option(None, "--density", help="Same as --option density=X."),
    t: float = typer.Option(None, "--t", help="Same as --option t=X."),
    seed: int = typer.Option(None, "--seed", help="Same as --option seed=N."),
    combine: str = typer.Option(None, "--combine", help="Same as --option combine=NAME."),
    option: list[str] = typer.Option([], "--option", "-o", help="NAME=VALUE: an option of the method (listed above); "
                                     "repeat for several."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing checkpoint at --out."),
    adapter: list[Path] = typer.Option([], "--adapter", help="A LoRA adapter (PEFT format) to merge; repeat for "
                                       "several. A checkpoint argument that is an adapter counts as one."),
    fold: bool = typer.Option(False, "--fold", help="Write base + the one adapter as a plain checkpoint."),
) -> None:
    """Merge checkpoint weights, or LoRA adapters of one base, into one model.

    Examples:

      hybridformer merge --method linear --weights 0.6,0.4 seed1/best seed2/best --out soup

      hybridformer merge --method slerp --t 0.3 a/best b/best --out slerp

      hybridformer merge --method ties --base pre/best --density 0.2 ft1/best ft2/best --out ties

      hybridformer merge --method dare --combine ties --base pre/best --density 0.5 ft1/best ft2/best --out dare

      hybridformer merge --method dare -o combine=ties -o density=0.5 --base pre/best ft1/best ft2/best --out dare

      hybridformer merge --method ties --density 0.5 --adapter lora1/best --adapter lora2/best --out ties

      hybridformer merge --fold --adapter lora/checkpoints/best --out tuned     # base + adapter, plain
    """
    from ..fusion import merge_checkpoints
    from ..lora import is_adapter_only

    options = {"density": density, "t": t, "seed": seed, "combine": combine}
    for name, value in parse_assignments(option, option_name="--option").items():
        if options.get(name) is not None:
            raise ConfigError(f"--option {name}=... repeats --{name}; give it once")
        options[name] = value
    checkpoints = list(checkpoints or [])
    adapters = [*adapter, *(c for c in checkpoints if is_adapter_only(c))]
    checkpoints = [c for c in checkpoints if not is_adapter_only(c)]
    prepare_output_dir(out, overwrite=overwrite, inputs=[*checkpoints, *adapters, *([base] if base else [])])
    if adapters or fold:
        written = _merge_adapters(checkpoints, adapters, method, out, base, fold, weights, options,
                                  overwrite)
        typer.echo(f"{'folded' if fold else f'merged {len(adapters)} adapters with {method}'} -> {written}")
        return
    if method is None or not checkpoints:
        raise ConfigError("merge needs --method and the checkpoints to merge (or --adapter/--fold for adapters)")
    written = merge_checkpoints(checkpoints, method, out, base=base, weights=parse_weights(weights), **options)
    typer.echo(f"merged {len(checkpoints)} checkpoints with {method} -> {written}")


def _merge_adapters(checkpoints: list[Path], adapters: list[Path], method: str | None, out: Path, base: Path | None,
                    fold: bool, weights: str | None, options: dict, overwrite: bool) -> Path:
    from ..fusion import merge_adapters
    from ..lora import fold_adapter

    if len(checkpoints) > 1 or (checkpoints and base):
        raise ConfigError("adapters apply to one base: give it once (as the checkpoint or --base), or leave it out "
                          "to use the base the adapters name")
    base = checkpoints[0] if checkpoints else base
    if fold:
        if len(adapters) != 1 or method is not None:
            raise ConfigError(f"--fold writes base + one adapter (got {len(adapters)} adapters"
                              f"{', and --method' if method else ''}); merge several with --method")
        return fold_adapter(adapters[0], out, base=base, overwrite=overwrite)
    if method is None:
        raise ConfigError("merging adapters needs --method (or --fold for one adapter)")
    return merge_adapters(adapters, method, out, base=base, weights=parse_weights(weights), **options)


merge.__doc__ = inspect.cleandoc(merge.__doc__) + "\n\nMethods and their options:\n\n" + "\n\n".join(
    f"  {name}: {takes}" for name, takes in MERGE_METHOD_HELP.items())
