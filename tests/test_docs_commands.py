"""Every ``hybridformer ...`` command quoted in README.md and docs/ names a real command and real flags.

The commands are checked against the CLI's own parser (typer's click tree), so a renamed flag or a
removed command fails here instead of in a user's shell. Code fences must also be balanced: an
unclosed fence renders the prose after it as code.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer

from hybridformer.cli import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^\s*```")


def shell_blocks(text: str) -> list[str]:
    """The bodies of the ```bash / ```sh / ```console / ```shell fences, continuation lines joined."""
    blocks = re.findall(r"^\s*```(?:bash|sh|shell|console)\n(.*?)^\s*```", text, re.S | re.M)
    return [block.replace("\\\n", " ") for block in blocks]


def commands(text: str) -> list[str]:
    """Each ``hybridformer`` invocation in the shell blocks, from the program name to the end of its command."""
    found = []
    for block in shell_blocks(text):
        for line in block.splitlines():
            line = re.sub(r"(^|\s)#.*$", "", line).strip().removeprefix("$ ")
            for part in re.split(r"\|\||&&|[|;]", line):
                words = part.split()
                if "hybridformer" in words:
                    found.append(" ".join(words[words.index("hybridformer"):]))
    return found


def options_of(command) -> set[str]:
    return {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)} | {"--help"}


def check(line: str, root) -> str | None:
    """None when the parser knows the command and each of its flags, else what it does not know."""
    try:
        words = shlex.split(line)[1:]
    except ValueError as exc:
        return f"cannot split: {exc}"
    words = [w for w in words if not re.match(r"^\d?[<>]", w)]
    command, path = root, ["hybridformer"]
    while words and hasattr(command, "commands") and not words[0].startswith("-"):
        name = words.pop(0)
        if name not in command.commands:
            return f"no command {' '.join([*path, name])!r}"
        command, path = command.commands[name], [*path, name]
    known = options_of(command)
    unknown = [w.split("=")[0] for w in words if w.startswith("-") and w != "-" and not _is_number(w)
               and w.split("=")[0] not in known]
    return f"{' '.join(path)} has no option {unknown[0]}" if unknown else None


def _is_number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


def test_fences_are_balanced():
    for doc in DOCS:
        fences = sum(1 for line in doc.read_text().splitlines() if FENCE.match(line))
        assert fences % 2 == 0, f"{doc.name}: {fences} code fence lines (one is never closed)"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_quoted_commands_parse(doc):
    root = typer.main.get_command(app)
    problems = [f"{line!r}: {problem}" for line in commands(doc.read_text()) if (problem := check(line, root))]
    assert not problems, f"{doc.name}:\n" + "\n".join(problems)


def test_checker_catches_mistakes():
    root = typer.main.get_command(app)
    assert check("hybridformer generate ckpt --input - --beam 4", root) is None
    assert "no option --beem" in check("hybridformer generate ckpt --beem 4", root)
    assert "no command" in check("hybridformer genrate ckpt", root)
    assert commands("```bash\necho hi | hybridformer generate x --input - > out  # note\n```\n") == [
        "hybridformer generate x --input - > out"]
