"""What the README promises holds for the shipped recipes and a fresh install (issue 17, front-door truth)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_test_command_installs_the_test_extra():
    command = re.search(r"Run the tests.*?```bash\n(.*?)```", README, re.S).group(1)
    assert 'pip install -e ".[test]"' in command and "python -m pytest" in command
    ci = (ROOT / ".ci" / "run").read_text()
    assert '-e ".[test]"' in ci
    pytest_args = command.split("python -m pytest", 1)[1].strip()
    assert f"python -m pytest {pytest_args} ||" in ci, "CI runs the README's pytest command"


def test_average_last_fits_the_recipe_keep_last():
    """``average --last N RUN`` needs N step checkpoints, and the trainer keeps only ``train.keep_last``."""
    recipes = dict(re.findall(r"hybridformer train (configs/\S+\.yaml) --out (\S+)", README))
    recipes = {run: recipe for recipe, run in recipes.items()}
    uses = re.findall(r"average --last (\d+) (\S+)", README)
    assert uses
    for last, run in uses:
        recipe = yaml.safe_load((ROOT / recipes[run]).read_text())
        assert int(last) <= recipe["train"].get("keep_last", 3), (run, recipes[run])


def test_quickstart_time_is_stated_once_and_matches_results():
    """One measured figure, in the README, docs/quickstart.md and the command's help, from RESULTS.md."""
    results = (ROOT / "docs" / "RESULTS.md").read_text()
    wall, cpu = map(int, re.search(r"\*\*Idle-machine rerun [^*]*\*\*\s+wall (\d+) s,\s+CPU (\d+) s", results).groups())
    stated = f"{round(cpu, -1)} CPU-seconds ({wall} s wall on an idle 2-core CPU)"
    for path in ("README.md", "docs/quickstart.md", "src/hybridformer/quickstart.py",
                 "src/hybridformer/cli/quickstart.py"):
        text = (ROOT / path).read_text()
        assert " ".join(stated.split()) in " ".join(text.split()), path
        assert "about two minutes" not in text and "about 2 minutes" not in text, path


def test_readme_quickstart_table_is_the_current_run():
    table = re.search(r"```\n(.*?┃ model.*?)```", README, re.S).group(1)
    rows = [line for line in table.splitlines() if line.startswith("│")]
    assert len(rows) == 5 and "decode s ┃" in table
    quickstart = (ROOT / "docs" / "RESULTS.md").read_text().split("## Quickstart")[1].split("\n## ")[0]
    assert all(row in quickstart for row in rows)
