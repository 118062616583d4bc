"""``hybridformer tune-weights``: ensemble weights or merge coefficients tuned on a dev set."""

from __future__ import annotations

from pathlib import Path

import typer

from ..outputs import prepare_output_file
from ..tune import tune_decoding, tune_weights
from .generate import BATCH_TOKENS, BEAM, DEVICE, LENPEN, WEIGHTS
from .options import parse_list, parse_weights


def tune_weights_cmd(
    checkpoints: list[Path] = typer.Argument(..., help="Two or more checkpoint directories (one vocabulary)."),
    src: Path = typer.Option(..., "--src", help="Development-set source lines (never the test set)."),
    ref: Path = typer.Option(..., "--ref", help="Development-set references, paired with --src line by line."),
    out: Path = typer.Option(..., "--out", help="JSON file to write: the weights, the dev score, every trial."),
    metric: str = typer.Option("bleu", "--metric", "-m", help="bleu | chrf (decode the dev set) | loss "
                               "(teacher-forced cross-entropy: much faster)."),
    purpose: str = typer.Option("ensemble", "--for", help="ensemble (decoding weights) | merge (coefficients "
                                "of a linear merge: merge --method linear --weights @FILE)."),
    step: float = typer.Option(0.1, "--step", help="Grid step on the weight simplex, 0.01 to 0.5."),
    combine: str = typer.Option("prob", "--combine", help="--for ensemble: prob | log_prob, as in generate."),
    allow_test_data: bool = typer.Option(False, "--allow-test-data", help="Tune on files whose name says "
                                         "'test' (refused by default: tuning on test data inflates the score)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file."),
    beam: int = BEAM,
    lenpen: float = LENPEN,
    device: str = DEVICE,
    quiet: bool = typer.Option(False, "--quiet", help="Do not print each trial."),
) -> None:
    """Search the weights that score best on a development set and write them to a JSON file.

    Two checkpoints: every weight pair on a grid of --step; more: coordinate search over the simplex.
    Use the result with --weights @FILE in generate, evaluate and merge. Files that look like test
    data (name contains 'test', or a folder named test/tests/testset/testing) are refused unless
    --allow-test-data.

    Examples:
      hybridformer tune-weights a/best b/best c/best --src val.en --ref val.de --out weights.json
      hybridformer evaluate a/best b/best c/best --src test.en --ref test.de --weights @weights.json
      hybridformer tune-weights a/best b/best --for merge --metric loss --src val.en --ref val.de --out m.json
      hybridformer merge --method linear a/best b/best --weights @m.json --out soup
    """
    target = prepare_output_file(out, overwrite=overwrite, inputs=[*checkpoints, src, ref])
    log = None if quiet else (lambda line: typer.echo(line, err=True))
    decoding = {"beam": beam, "lenpen": lenpen} if metric != "loss" else {}
    result = tune_weights(checkpoints, src, ref, metric=metric, purpose=purpose, step=step, combine=combine,
                          allow_test_data=allow_test_data, device=device, log=log, **decoding)
    target.write_text(result.to_json(), encoding="utf-8")
    weights = ", ".join(f"{w:.3g}" for w in result.weights)
    typer.echo(f"best {purpose} weights [{weights}]: dev {metric} {result.score:.4f} "
               f"({len(result.trials)} candidates) -> {target}")


def tune_decoding_cmd(
    checkpoints: list[Path] = typer.Argument(..., help="One checkpoint, or several decoding as an ensemble."),
    src: Path = typer.Option(..., "--src", help="Development-set source lines (never the test set)."),
    ref: Path = typer.Option(..., "--ref", help="Development-set references, paired with --src line by line."),
    out: Path = typer.Option(..., "--out", help="JSON file to write: the best beam and lenpen, every trial."),
    beams: str = typer.Option("4,5", "--beams", help="Beam sizes to try, comma-separated."),
    lenpens: str = typer.Option("0.6,0.8,1.0,1.2,1.4", "--lenpens", help="Length penalties to try, comma-separated."),
    metric: str = typer.Option("bleu", "--metric", "-m", help="bleu | chrf"),
    weights: str = WEIGHTS,
    combine: str = typer.Option("prob", "--combine", help="Ensemble: prob | log_prob, as in generate."),
    batch_tokens: int = BATCH_TOKENS,
    allow_test_data: bool = typer.Option(False, "--allow-test-data", help="Tune on files whose name says "
                                         "'test' (refused by default: tuning on test data inflates the score)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file."),
    device: str = DEVICE,
    quiet: bool = typer.Option(False, "--quiet", help="Do not print each trial."),
) -> None:
    """Choose the beam size and length penalty on a development set: every pair of the grid decodes it once.

    Use the result with --beam/--lenpen in generate, evaluate and distill --kind sequence. Files that
    look like test data are refused unless --allow-test-data, as in tune-weights.

    Examples:
      hybridformer tune-decoding a/best b/best --weights @weights.json --src val.en --ref val.de --out search.json
      hybridformer tune-decoding a/best --beams 1,4 --lenpens 0.8,1.0 --src val.en --ref val.de --out search.json
    """
    beam_grid = parse_list(beams, int, option="--beams", example="4,5")
    lenpen_grid = parse_list(lenpens, float, option="--lenpens", example="0.8,1.0,1.2")
    target = prepare_output_file(out, overwrite=overwrite, inputs=[*checkpoints, src, ref])
    log = None if quiet else (lambda line: typer.echo(line, err=True))
    result = tune_decoding(checkpoints, src, ref, beams=beam_grid, lenpens=lenpen_grid, metric=metric,
                           weights=parse_weights(weights), combine=combine, allow_test_data=allow_test_data,
                           device=device, log=log, batch_tokens=batch_tokens)
    target.write_text(result.to_json(), encoding="utf-8")
    typer.echo(f"best beam {result.beam}, lenpen {result.lenpen:g}: dev {metric} {result.score:.4f} "
               f"({len(result.trials)} candidates) -> {target}")
