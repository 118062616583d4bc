"""The ``hybridformer`` command line: typer sub-apps, one file per command group.

Every command body only calls the public Python API. Errors the user can fix (bad config,
bad data, bad checkpoint) print as one line on stderr and exit with status 2 — no traceback.
"""

from __future__ import annotations

import os
import sys

import typer

from ..errors import HybridformerError
from . import bench, compress, config_cmd, distill, fusion, tokenizer, train
from . import embed as embed_cmd
from . import evaluate as evaluate_cmd
from . import generate as generate_cmd
from . import hybridize as hybridize_cmd
from . import interop as interop_cmd
from . import longify as longify_cmd
from . import tune as tune_cmd
from .quickstart import quickstart
from .serve import serve_cmd

app = typer.Typer(
    name="hybridformer", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Improved Transformers: long-text attention, convolution hybrids and model fusion.",
)


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"hybridformer {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")) -> None:
    """Improved Transformers: long-text attention, convolution hybrids and model fusion."""


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
app.command("hybridize")(hybridize_cmd.hybridize)
app.command("tune-weights")(tune_cmd.tune_weights_cmd)
app.command("tune-decoding")(tune_cmd.tune_decoding_cmd)
app.command("quickstart")(quickstart)
app.command("serve")(serve_cmd)
app.command("convert")(interop_cmd.convert)
app.command("export")(interop_cmd.export)
app.command("embed")(embed_cmd.embed_cmd)


def main() -> int:
    """Console-script entry point (``sys.exit(main())``): the exit status of DESIGN.md.

    0 success; 2 bad input or usage (one line on stderr, never a traceback); 3 training diverged;
    130 interrupted (SIGINT; 143 for SIGTERM). The installed typer may ship its own copy of click,
    so click's exception classes are taken from typer itself (see ``_click_classes``).
    """
    click_error, usage_error = _click_classes()
    try:
        status = app(standalone_mode=False)
    except HybridformerError as exc:
        return fail(str(exc))
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("interrupted", err=True)
        return 130
    except typer.Exit as exc:
        return exc.exit_code
    except BrokenPipeError:  # ``generate ... | head``: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:  # a full disk, a read-only or unreadable path: the environment, not a bug
        where = f"{exc.filename}: " if exc.filename else ""
        return fail(f"{where}{exc.strerror or exc}")
    except click_error as exc:
        if type(exc).__name__ == "NoArgsIsHelpError" and getattr(exc, "ctx", None) is not None:
            text = exc.ctx.get_help()  # bare ``hybridformer`` or ``hybridformer bench`` (rich prints it itself)
            if text:
                typer.echo(text, err=True)
            return 2
        hint = ""
        if isinstance(exc, usage_error) and getattr(exc, "ctx", None) is not None:
            hint = f" (see '{exc.ctx.command_path} --help')"
        return fail(exc.format_message() + hint)
    return status if isinstance(status, int) else 0


def fail(message: str) -> int:
    """Print ``error: MESSAGE`` as one line on stderr; the status of bad input and usage."""
    typer.secho(f"error: {' '.join(message.split())}", fg="red", err=True)
    return 2


def _click_classes() -> tuple[type[Exception], type[Exception]]:
    """(ClickException, UsageError) of the click that typer really uses (its vendored copy or click)."""
    classes = {cls.__name__: cls for cls in typer.BadParameter.__mro__}
    return classes["ClickException"], classes["UsageError"]


# Decoding and evaluation (issue 6).
