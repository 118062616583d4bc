"""Every example of docs/deployment.md's "Examples, as run" runs: each ``curl`` command (its documented HTTP status
where the example prints one) and each Python block, against a tiny language model served with the documented key."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from serve.test_server import running_server, served_models  # noqa: F401 - served_models: fixture

pytest.importorskip("openai", reason="the openai client (test extra) is not installed")

DOC = Path(__file__).resolve().parents[2] / "docs" / "deployment.md"
LOCAL = re.compile(r"(localhost|127\.0\.0\.1):89\d\d")


def examples() -> str:
    text = DOC.read_text()
    start = text.index("### Examples, as run")
    return text[start: text.index("\n## ", start)]


def curl_examples() -> list[tuple[str, str | None]]:
    """``(command, documented status or None)`` for every ``$ curl`` line."""
    lines = examples().splitlines()
    found = []
    for i, line in enumerate(lines):
        if line.startswith("$ curl"):
            status = None
            if "%{http_code}" in line:
                status = lines[i + 1].rsplit(" ", 1)[-1]
            found.append((line[2:], status))
    return found


def python_examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", examples(), flags=re.S)


def test_the_examples_are_found():
    assert len(curl_examples()) >= 5 and len(python_examples()) >= 2


@pytest.fixture(scope="module")
def doc_server(served_models):  # noqa: F811
    with running_server(served_models["decoder_lm"], api_key="secret") as url:
        yield url.removeprefix("http://")


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("command, status", curl_examples())
def test_curl_example(doc_server, command, status):
    done = subprocess.run(["bash", "-c", LOCAL.sub(doc_server, command)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stdout.strip(), (command, done.stderr)
    if status is not None:
        assert done.stdout.strip().rsplit(" ", 1)[-1] == status, done.stdout
    if '"stream": true' in command:
        assert done.stdout.rstrip().endswith("data: [DONE]")


@pytest.mark.parametrize("index", range(len(python_examples())))
def test_python_example(doc_server, index, capsys):
    exec(compile(LOCAL.sub(doc_server, python_examples()[index]), f"deployment.md python #{index}", "exec"), {})
    assert capsys.readouterr().out.strip()
