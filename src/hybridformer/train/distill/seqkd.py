"""Sequence-level knowledge distillation data: the teachers' beam outputs on the training sources, cached.

Kim & Rush (2016) found that training the student on the teacher's beam-search translations of
the training sources (instead of the references) transfers more than word-level KD and makes
the student's own beam search almost unnecessary. Decoding the training set is the expensive
part, so it happens once: the pairs (source, teacher output) are written to
``RUN_DIR/seqkd/train.jsonl`` with the validation references beside them (``valid.jsonl``) and a
``meta.json`` saying how they were made. Decoding is written shard by shard, so an interrupted run
resumes after the last finished shard. A resumed or repeated run with the same teachers,
search settings and sources reuses the files; the student then trains with the normal trainer
on ``data.format=jsonl`` — or, with the references mixed in, on both targets of every source
(``train+references.jsonl``), which keeps the references' diversity beside the teacher's simpler
outputs (Kim & Rush, 2016, fine-tune on the original data; Zhou et al., 2020 on the trade-off).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ... import structured
from ...checkpoint import Checkpoint
from ...config import DataConfig
from ...errors import DataError
from ...filenames import META
from ...generation import generate
from ...outputs import atomic_file

SEQKD_DIR = "seqkd"
SHARD_SIZE = 1000  # sources per atomically written shard: the most an interruption can lose


def sources_digest(pairs: Sequence[tuple[str, str]]) -> str:
    digest = hashlib.sha256()
    for source, _ in pairs:
        digest.update(source.encode("utf-8") + b"\n")
    return digest.hexdigest()


def teacher_targets(run_root: Path, teachers: Sequence[Checkpoint], train: Sequence[tuple[str, str]],
                    valid: Sequence[tuple[str, str]], *, search: dict[str, Any], device: str,
                    weights: Sequence[float] | None, combine: str, log: Callable[[str], None] = print,
                    shard_size: int = SHARD_SIZE) -> Path:
    """The cache directory holding ``train.jsonl`` (teacher outputs) and ``valid.jsonl``; decoded only when missing.

    ``search`` are :func:`~hybridformer.generate` options (beam, lenpen, batch_tokens, ...). Decoding goes
    shard by shard (``shard_size`` sources) into ``RUN_DIR/.seqkd.partial/``, each shard written
    atomically, so an interrupted run picks up after the last finished shard instead of starting over.
    """
    cache = run_root / SEQKD_DIR
    meta = cache_meta(teachers, train, search=search, weights=weights, combine=combine)
    if _holds(cache, meta):
        log(f"sequence-level KD: reusing {len(train)} cached teacher outputs from {cache / 'train.jsonl'}")
        return cache
    partial = run_root / f".{SEQKD_DIR}.partial"
    sharded = meta | {"shard_size": shard_size}
    if _meta(partial) != sharded:  # other teachers, search, sources or shards: earlier shards do not apply
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        (partial / META).write_text(json.dumps(sharded, indent=1) + "\n")
    starts = range(0, len(train), shard_size)
    shards = [partial / f"train-{index:05d}.jsonl" for index in range(len(starts))]
    done = sum(shard.exists() for shard in shards)
    log(f"sequence-level KD: decoding {len(train)} training sources with {len(teachers)} teacher(s) "
        f"({', '.join(f'{k}={v}' for k, v in search.items())}); cached in {cache}"
        + (f"; {done} of {len(shards)} shards already decoded" if done else ""))
    started = time.perf_counter()
    for start, shard in zip(starts, shards, strict=True):
        if shard.exists():
            continue
        pairs = train[start:start + shard_size]
        outputs = generate(list(teachers), (source for source, _ in pairs), device=device, weights=weights,
                           combine=combine, **search)
        _write_jsonl(shard, ((source, out) for (source, _), out in zip(pairs, outputs, strict=True)))
    with (partial / "train.jsonl").open("w", encoding="utf-8") as handle:
        for shard in shards:
            handle.write(shard.read_text(encoding="utf-8"))
            shard.unlink()
    _write_jsonl(partial / "valid.jsonl", valid)
    (partial / META).write_text(json.dumps(meta, indent=1) + "\n")
    shutil.rmtree(cache, ignore_errors=True)
    partial.rename(cache)  # a crash before this line leaves the finished shards for the next run
    log(f"sequence-level KD: decoded in {time.perf_counter() - started:.1f}s")
    return cache


def cache_meta(teachers: Sequence[Checkpoint], train: Sequence[tuple[str, str]], *, search: dict[str, Any],
               weights: Sequence[float] | None, combine: str) -> dict[str, Any]:
    """What the cached outputs depend on: a cache is reused only when all of it matches."""
    return {"teachers": [str(Path(t.path).resolve()) for t in teachers], "search": search,
            "weights": list(weights) if weights is not None else None, "combine": combine,
            "sources": len(train), "sources_sha256": sources_digest(train)}


def _meta(directory: Path) -> dict[str, Any] | None:
    try:
        return structured.read(directory / "meta.json", error=DataError)
    except DataError:
        return None


def _holds(cache: Path, meta: dict[str, Any]) -> bool:
    return _meta(cache) == meta and (cache / "train.jsonl").exists()


def wait_for_cache(run_root: Path, meta: dict[str, Any], poll_s: float = 2.0) -> Path:
    """Under torchrun: block until rank 0 has renamed the finished cache (with this ``meta``) into place."""
    cache = run_root / SEQKD_DIR
    while not _holds(cache, meta):
        time.sleep(poll_s)
    return cache


def _write_jsonl(path: Path, pairs) -> None:
    """Write (source, target) rows atomically: the file exists only once complete."""
    with atomic_file(path) as handle:
        for source, target in pairs:
            handle.write(json.dumps({"source": source, "target": target}, ensure_ascii=False) + "\n")


def with_references(cache: Path, train: Sequence[tuple[str, str]], *, write: bool = True,
                    poll_s: float = 2.0) -> Path:
    """``cache/train+references.jsonl``: the teacher's pairs followed by the original ones, so the student
    sees both targets of every source. Written once per cache (a new decoding replaces the whole cache
    directory); with ``write=False`` (torchrun ranks but 0) wait until rank 0 has written it."""
    path = cache / MIXED_FILE
    while not write and not path.exists():
        time.sleep(poll_s)
    if not path.exists():
        rows = [json.loads(line) for line in (cache / "train.jsonl").read_text(encoding="utf-8").splitlines()]
        _write_jsonl(path, [*((row["source"], row["target"]) for row in rows), *train])
    return path


MIXED_FILE = "train+references.jsonl"


def cached_data_config(data: DataConfig, cache: Path, train_file: Path | None = None) -> DataConfig:
    """``data`` pointed at the cached pairs (JSONL; ``train_file`` instead of the teacher's outputs alone),
    all other settings (lengths, batching, tokenizer) kept."""
    return data.model_copy(update={
        "format": "jsonl", "builtin": None, "train_src": None, "train_tgt": None, "valid_src": None,
        "valid_tgt": None, "train_file": str(train_file or cache / "train.jsonl"),
        "valid_file": str(cache / "valid.jsonl"), "src_field": "source", "tgt_field": "target"})
