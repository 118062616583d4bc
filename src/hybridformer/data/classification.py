"""Labeled documents for classification: JSONL with a text and a label field, or one folder per label.

The folder layout is the one aclImdb (Maas et al., 2011) and many sentiment and topic corpora
use, ``<root>/<split>/<label>/*.txt``. It is read from a directory or straight from a ``.tar``,
``.tar.gz``/``.tgz`` archive, streamed member by member with :mod:`tarfile`, so nothing is
extracted to disk. Labels become class ids in sorted order (numeric order when every label is an
integer); the trainer writes that list into every checkpoint, so evaluation maps labels the same way.
"""

from __future__ import annotations

import gzip
import random
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from tokenizers import Tokenizer

from ..errors import DataError
from .datasets import DataReport, Example, json_records
from .text import decode_utf8
from .tokenizer import encode

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


@dataclass(frozen=True)
class Document:
    text: str
    label: str
    where: str  # file (and line, for JSONL) it came from, for error messages


# ----------------------------------------------------------------------------- reading


def read_labeled_jsonl(path: str | Path, text_field: str = "text", label_field: str = "label") -> list[Document]:
    """One document per JSON line: ``record[text_field]`` (text) and ``record[label_field]`` (a string or an int)."""
    from .datasets import _field

    documents = []
    for where, record in json_records(path):
        text = _field(record, text_field, where)
        if not isinstance(record, dict) or label_field not in record:
            keys = ", ".join(sorted(record)) if isinstance(record, dict) else type(record).__name__
            raise DataError(f"{where}: no label field {label_field!r} (available: {keys})")
        label = record[label_field]
        if isinstance(label, bool) or not isinstance(label, str | int):
            raise DataError(f"{where}: label field {label_field!r} is {type(label).__name__}, expected a string or "
                            "an integer")
        documents.append(Document(text, str(label), where))
    return documents


def read_label_folders(path: str | Path, splits: Sequence[str], labels: Sequence[str] | None = None,
                       ) -> dict[str, list[Document]]:
    """Documents of ``<path>/<split>/<label>/*.txt`` for each split, from a directory or a tar archive.

    In an archive the layout may sit under one top-level folder (``aclImdb/train/pos/0_9.txt``).
    ``labels`` keeps only those label folders (e.g. skip aclImdb's unlabeled ``train/unsup``).
    Documents come sorted by (label, file name), so the result does not depend on archive order.
    """
    path = Path(path)
    if path.is_dir():
        members = _directory_members(path)
    elif path.name.endswith(ARCHIVE_SUFFIXES):
        members = _archive_members(path)
    elif not path.exists():
        raise DataError(f"{path}: no such directory or archive")
    else:
        raise DataError(f"{path}: expected a directory <root>/<split>/<label>/*.txt or a "
                        f"{'/'.join(ARCHIVE_SUFFIXES)} archive of one")
    found: dict[str, list[Document]] = {split: [] for split in splits}
    seen_splits: set[str] = set()
    for (split, label), where, read in members:
        seen_splits.add(split)
        if split in found and (labels is None or label in labels):
            found[split].append(Document(decode_utf8(read(), where), label, where))
    for split, documents in found.items():
        if not documents:
            raise DataError(f"{path}: no documents in {split}/<label>/*.txt"
                            + (f" for labels {', '.join(labels)}" if labels else "")
                            + f"; splits found: {', '.join(sorted(seen_splits)) or '(none)'}")
        documents.sort(key=lambda doc: (doc.label, doc.where))
    return found


Member = tuple[tuple[str, str], str, Callable[[], bytes]]  # (split, label), where, read()


def _directory_members(root: Path) -> Iterator[Member]:
    for file in root.glob("*/*/*.txt"):
        if file.is_file():
            yield (file.parent.parent.name, file.parent.name), str(file), file.read_bytes


def _archive_members(archive: Path) -> Iterator[Member]:
    """Members ``[top/]split/label/name.txt``; each must be read before the next (a streamed archive)."""
    _check_gzip(archive)
    try:
        with tarfile.open(archive, "r|*") as stream:  # sequential: one pass over the compressed file
            for member in stream:
                parts = PurePosixPath(member.name).parts
                if member.isfile() and len(parts) in (3, 4) and parts[-1].endswith(".txt"):
                    yield parts[-3:-1], f"{archive}:{member.name}", _reader(archive, stream.extractfile(member))
    except _ARCHIVE_ERRORS as exc:
        raise DataError(f"{archive}: cannot read archive ({exc})") from None


_ARCHIVE_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error)


def _check_gzip(archive: Path) -> None:
    """A gzip archive is checked whole (its CRC) before any document is read: ``tarfile`` takes a member header
    garbled by a flipped byte for the end of the archive, and would score the documents before it silently."""
    with open(archive, "rb") as raw:
        if raw.read(2) != b"\x1f\x8b":
            return
    try:
        with gzip.open(archive, "rb") as stream:
            while stream.read(1 << 22):
                pass
    except _ARCHIVE_ERRORS as exc:
        raise DataError(f"{archive}: cannot read archive ({exc}); it is corrupt: download or copy it again") from None


def _reader(archive: Path, handle: Any) -> Callable[[], bytes]:
    """``handle.read`` whose failure (a truncated or corrupt archive, met while reading a member) is a DataError."""
    def read() -> bytes:
        try:
            return handle.read()
        except _ARCHIVE_ERRORS as exc:
            raise DataError(f"{archive}: cannot read archive ({exc}); is it truncated?") from None
    return read


def read_documents(path: str | Path, *, format: str, split: str = "test", text_field: str = "text",
                   label_field: str = "label", labels: Sequence[str] | None = None) -> list[Document]:
    """Labeled documents of one file or split: ``format`` is ``jsonl`` or ``folders`` (``auto``: by the path)."""
    if format == "auto":
        format = "jsonl" if Path(path).name.endswith((".jsonl", ".jsonl.gz", ".json")) else "folders"
    if format == "jsonl":
        documents = read_labeled_jsonl(path, text_field, label_field)
        return [doc for doc in documents if labels is None or doc.label in labels]
    if format == "folders":
        return read_label_folders(path, [split], labels)[split]
    raise DataError(f"labeled documents come as 'jsonl' or 'folders', not {format!r}")


# ----------------------------------------------------------------------------- labels and examples


def label_names(labels: Iterable[str]) -> list[str]:
    """The class list: sorted, numerically when every label is an integer (``2 < 10``); index = class id."""
    names = set(labels)
    if names and all(_is_int(name) for name in names):
        return sorted(names, key=int)
    return sorted(names)


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def shuffled(documents: Sequence[Document], seed: int = 0) -> list[Document]:
    """A seeded permutation (reading order is by label, so every split and subset is drawn from this)."""
    out = list(documents)
    random.Random(seed).shuffle(out)
    return out


def classification_examples(documents: Sequence[Document], tokenizer: Tokenizer, labels: Sequence[str], *,
                            max_len: int, source: str) -> tuple[list[Example], DataReport]:
    """Token ids truncated to ``max_len`` with the label's class id; empty documents are dropped and counted.

    A label outside ``labels`` (the training classes) is a DataError naming the document.
    """
    ids_of = {name: i for i, name in enumerate(labels)}
    report = DataReport(source, read=len(documents))
    examples, truncated = [], 0
    for doc, ids in zip(documents, encode(tokenizer, [doc.text for doc in documents]), strict=True):
        if doc.label not in ids_of:
            raise DataError(f"{doc.where}: label {doc.label!r} is not one of the {len(labels)} training classes "
                            f"({', '.join(labels[:10])}{', ...' if len(labels) > 10 else ''})")
        if not ids:
            report.dropped_empty += 1
            continue
        truncated += len(ids) > max_len
        examples.append(Example(ids[:max_len], [], [], label=ids_of[doc.label]))
    report.kept = len(examples)
    if truncated:
        report.notes.append(f"{truncated} truncated to {max_len} tokens")
    return examples, report
