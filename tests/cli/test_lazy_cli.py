"""The front door stays fast: building the CLI and answering ``--help``/``--version`` never imports torch,
numpy or transformers (they load inside the command that needs them). Timing is not asserted (a shared machine
makes it flaky); the names the help texts show are checked against the registries instead."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import entry_env, run_entry

HEAVY = ("torch", "numpy", "transformers")

PROBE = """
import sys
from hybridformer.cli import main
sys.argv = ["hybridformer", *sys.argv[1:]]
status = main()
print("heavy:", ",".join(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)
sys.exit(status)
"""


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["generate", "--help"], ["bench", "layers", "--help"],
                                  ["embed", "--help"], ["evaluate", "--help"]])
def test_help_and_version_do_not_import_heavy_modules(args):
    result = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *args], capture_output=True, text=True,
                            env=entry_env(), timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == "heavy:", result.stderr[-2000:]


EVERY_HELP = """
import sys, contextlib, io
import typer
from hybridformer.cli import app, main

def paths(command, prefix):
    yield prefix
    for name, sub in sorted(getattr(command, "commands", dict()).items()):
        yield from paths(sub, [*prefix, name])

for path in paths(typer.main.get_command(app), []):
    sys.argv = ["hybridformer", *path, "--help"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main() == 0, path
    print(" ".join(path), file=sys.stderr)
print("heavy:", ",".join(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)
"""


def test_help_of_every_command_does_not_import_heavy_modules():
    result = subprocess.run([sys.executable, "-c", EVERY_HELP.format(heavy=HEAVY)], capture_output=True, text=True,
                            env=entry_env(), timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    shown = result.stderr.strip().splitlines()
    assert {"merge", "convert", "export", "bench serve", "tune-weights"} <= set(shown), shown
    assert shown[-1] == "heavy:", result.stderr[-2000:]


def test_import_hybridformer_is_lazy_but_complete():
    code = ("import sys, hybridformer; assert 'torch' not in sys.modules; "
            "from hybridformer import train, evaluate, embed; import hybridformer.train; "
            "assert callable(hybridformer.train) and hybridformer.train is train, hybridformer.train; "
            "assert all(hasattr(hybridformer, n) for n in hybridformer.__all__)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=entry_env(), timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_real_entry_point_help_exits_0():
    result = run_entry("--help")
    assert result.returncode == 0 and "merge" in result.stdout, result.stderr[-2000:]


def test_merge_help_still_lists_each_method_and_its_options():
    result = run_entry("merge", "--help", env=entry_env(COLUMNS="200"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Methods and their options" in result.stdout and "ties: --base" in result.stdout


def test_help_names_match_the_registries():
    from hybridformer import names
    from hybridformer.attention import ATTENTION
    from hybridformer.blocks import LAYERS
    from hybridformer.ffn import ACTIVATIONS
    from hybridformer.fusion import METHODS
    from hybridformer.fusion.merge import describe_methods

    assert names.ATTENTION_NAMES == tuple(ATTENTION)
    assert names.LAYER_NAMES == tuple(LAYERS)
    assert names.ACTIVATIONS == tuple(ACTIVATIONS)
    assert names.MERGE_METHODS == tuple(METHODS)
    assert names.MERGE_METHOD_HELP == describe_methods()


def test_config_loads_without_torch():
    """The config checks names against ``names``, not the registries: a default config imports no torch."""
    code = ("import sys; from hybridformer.config import ExperimentConfig; ExperimentConfig(); "
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('hybridformer'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=entry_env(), timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
