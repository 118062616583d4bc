"""The ``hybridformer`` command line: typer sub-apps, one file per command group.

Every command body only calls the public Python API. Errors the user can fix (bad config,
bad data, bad checkpoint) print as one line on stderr and exit with status 2 — no traceback.
"""

from __future__ import annotations

import sys

import typer

from ..errors import HybridformerError
from . import bench, compress, config_cmd, distill, fusion, tokenizer, train
from . import evaluate as evaluate_cmd
from . import generate as generate_cmd
from . import interop as interop_cmd
from . import longify as longify_cmd
from .quickstart import quickstart

app = typer.Typer(
    name="hybridformer", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Improved Transformers: long-text attention, convolution hybrids and model fusion.",
)
app.add_typer(bench.app, name="bench")
app.add_typer(config_cmd.app, name="config")
app.add_typer(tokenizer.app, name="tokenizer")
app.command("train")(train.train)
app.command("generate")(generate_cmd.generate_cmd)
app.command("evaluate")(evaluate_cmd.evaluate_cmd)
app.command("average")(fusion.average)
app.command("merge")(fusion.merge)
app.command("distill")(distill.distill)
app.command("prune")(compress.prune)
app.command("quantize")(compress.quantize)
app.command("longify")(longify_cmd.longify)
app.command("quickstart")(quickstart)
app.command("convert")(interop_cmd.convert)


def main() -> None:
    """Console-script entry point."""
    try:
        app(standalone_mode=False)
    except HybridformerError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click usage errors carry their own exit code
        from click.exceptions import ClickException

        if isinstance(exc, ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise

# Decoding and evaluation (issue 6).
