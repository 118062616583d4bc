"""`hybridformer config check`: valid configs print in full; bad ones are one line, exit 2, no traceback."""

import json
import subprocess
import sys


def run(*args):
    return subprocess.run([sys.executable, "-m", "hybridformer", *args], capture_output=True, text=True)


def test_check_prints_the_full_config():
    result = run("config", "check", "--set", "position=rope", "--set", "decoder.layers=4")
    assert result.returncode == 0, result.stderr
    cfg = json.loads(result.stdout)
    assert cfg["position"] == "rope" and cfg["decoder"]["layers"] == 4


def test_bad_value_is_one_clear_line():
    result = run("config", "check", "--set", "norm=batchnorm")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "norm" in result.stderr and "'rmsnorm'" in result.stderr and "Traceback" not in result.stderr
