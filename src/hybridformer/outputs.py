"""The output guard: what a command may write to ``--out`` without destroying what the user did not ask to lose.

Every command that writes ``--out`` calls :func:`prepare_output_dir` or :func:`prepare_output_file`
before it computes anything. An existing, non-empty target is refused unless ``--overwrite``; even
then only something hybridformer itself writes is replaced — a checkpoint directory (weights,
config, tokenizer, meta, or an export of them) or a regular file — never an arbitrary folder, a
training run, a step checkpoint holding trainer state, or an input of the same command. The write
itself stays atomic (temp dir + rename in :func:`hybridformer.checkpoint.write_checkpoint_dir`).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from .errors import DataError
from .filenames import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    CHAT_TEMPLATE,
    CONFIG,
    CT2_WEIGHTS,
    GENERATION_CONFIG,
    META,
    TOKENIZER,
    TOKENIZER_CONFIG,
    TRAINER_STATE,
    WEIGHTS,
    WEIGHTS_INDEX,
)

# Files a model directory written by hybridformer (a checkpoint, or an HF / CTranslate2 export of one) may hold.
MODEL_FILES = frozenset({
    WEIGHTS, CONFIG, TOKENIZER, META, GENERATION_CONFIG, TOKENIZER_CONFIG, "special_tokens_map.json", WEIGHTS_INDEX,
    CT2_WEIGHTS, "shared_vocabulary.json", "shared_vocabulary.txt", "source_vocabulary.json",
    "target_vocabulary.json", "vocabulary.json", "vocabulary.txt", CHAT_TEMPLATE, "README.md", "hybridformer.json",
    "vocab.json", "merges.txt", "tokenizer.model", "added_tokens.json", ADAPTER_CONFIG, ADAPTER_WEIGHTS,
})
_SHARD = re.compile(r"model-\d+-of-\d+\.safetensors")
RUN_MARKERS = ("checkpoints", "metrics.jsonl", "run.lock", "distill.json", "seqkd")  # what a training run holds


def prepare_output_dir(out: str | Path, *, overwrite: bool, inputs: Iterable[str | Path] = ()) -> Path:
    """Check that directory ``out`` may be written; raise :class:`DataError` (one line) when it may not.

    ``out`` may be absent or an empty directory; with ``overwrite`` it may also be a model directory
    that hybridformer wrote. It may never be a file, a training run directory, a step checkpoint of a
    run (it holds ``trainer_state.pt``), or overlap one of ``inputs``.
    """
    out = Path(out)
    _check_parent(out)
    _check_inputs(out, inputs)
    refuse_links([out], "give a new directory path", name="--out ")
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} is a file, not a directory; give a new directory path")
    if not out.exists() or not any(out.iterdir()):
        return out
    reason = _not_replaceable(out)
    if reason:
        raise DataError(f"--out {out} {reason}; it is never replaced, choose another --out")
    if not overwrite:
        raise DataError(f"--out {out} already exists and is not empty; pass --overwrite to replace it")
    return out


def prepare_output_file(path: str | Path, *, overwrite: bool, inputs: Iterable[str | Path] = ()) -> Path:
    """Check that file ``path`` may be written; same rules as :func:`prepare_output_dir` for one file."""
    path = Path(path)
    _check_parent(path)
    _check_inputs(path, inputs)
    if path.is_dir():
        raise DataError(f"--out {path} is a directory; give a file path such as {path / 'out.json'}")
    refuse_links([path], "give a regular file path", name="--out ")
    if path.exists() and not overwrite:
        raise DataError(f"--out {path} already exists; pass --overwrite to replace it")
    return path


def refuse_links(paths: Iterable[Path], what_to_do: str, *, name: str = "") -> None:
    """Writing through a symbolic link would overwrite a file elsewhere: any of ``paths`` that is one is refused."""
    for path in paths:
        if path.is_symlink():
            raise DataError(f"{name}{path} is a symbolic link; {what_to_do}")


def prepare_run_dir(out: str | Path) -> Path:
    """Check that ``out`` may hold a training run: absent, empty, or already a run directory (resume rules
    are the trainer's). A file, a link, or a folder of other things is refused, so nothing is overwritten."""
    out = Path(out)
    _check_parent(out)
    # a link the user made to a directory is fine (the trainer refuses links planted inside the run)
    if out.is_symlink() and not out.exists():
        raise DataError(f"--out {out} is a symbolic link to nothing; give a directory path")
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} is a file; a training run needs a directory path")
    if out.exists() and any(out.iterdir()) and not is_run_dir(out):
        raise DataError(f"--out {out} is a non-empty directory that is not a training run; "
                        "choose a new or empty --out")
    return out


@contextmanager
def atomic_file(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """``with atomic_file(path) as handle:`` — write a fresh temp file beside ``path`` and rename it over
    ``path`` only when the block completes: a failure or a kill leaves the old file (or none), never a
    partial one. The temp file is created exclusively and never through a link."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def is_run_dir(path: Path) -> bool:
    """A training run directory (``hybridformer train --out``): never replaced as a whole."""
    return path.is_dir() and any((path / marker).exists() for marker in RUN_MARKERS)


def _not_replaceable(out: Path) -> str | None:
    """Why ``out`` (an existing, non-empty directory) must not be replaced, or None for a model directory."""
    if is_run_dir(out):
        return "is a training run directory"
    if out.parent.name == "checkpoints" and is_run_dir(out.parent.parent):
        return f"is a checkpoint that training run {out.parent.parent} manages"
    names = {entry.name for entry in out.iterdir()}
    if TRAINER_STATE in names:
        return f"holds {TRAINER_STATE} (a resumable training checkpoint)"
    foreign = sorted(n for n in names if not (n in MODEL_FILES or _SHARD.fullmatch(n))
                     or not (out / n).is_file() or (out / n).is_symlink())
    if foreign or CONFIG not in names:
        example = f" (it holds {foreign[0]!r})" if foreign else " (no config.json)"
        return f"is not a hybridformer model directory{example}"
    return None


def _check_parent(out: Path) -> None:
    """The nearest existing ancestor must be a directory (``--out notes.txt/model`` is refused early)."""
    for parent in out.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise DataError(f"--out {out}: {parent} is a file, not a directory")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise DataError(f"--out {out}: {parent} is not writable")
            return


def _check_inputs(out: Path, inputs: Iterable[str | Path]) -> None:
    """``out`` must neither be, contain, nor lie inside one of the command's inputs."""
    target = out.resolve()
    for source in inputs:
        resolved = Path(source).resolve()
        if target == resolved or target in resolved.parents or resolved in target.parents:
            relation = ("is" if target == resolved else
                        "contains" if target in resolved.parents else "lies inside")
            raise DataError(f"--out {out} {relation} the input {source}; write the result somewhere else")
