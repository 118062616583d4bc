"""Fusion weights tuned on a development set: ensemble weights, or linear-merge coefficients; and the
beam size and length penalty of a (possibly weighted ensemble) decoder, on a plain grid.

The search is over weights on the simplex (non-negative, summing to 1) in steps of ``step``: an
exhaustive grid for two checkpoints, otherwise coordinate search — set one member's weight to each
grid value, rescale the others to fill the rest, keep the best, and cycle over the members until a
pass changes nothing (the usual way MT systems tune ensemble weights on a dev set; cf. Och, 2003,
whose MERT tunes feature weights the same way, one coordinate at a time). Each candidate is scored
by decoding the dev set (``bleu``/``chrf``) or by the teacher-forced cross-entropy of the references
(``loss``, much cheaper). Ties keep the earlier candidate, so the result is deterministic.

Tuning on the data you report is a way to overfit your own test set, so files that look like test
data are refused unless ``allow_test_data=True`` (see :func:`looks_like_test_data`).
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch

from . import structured
from .checkpoint import Checkpoint, load_checkpoint, load_config_file, load_tokenizer
from .data.text import encode_source, encode_target, pad, read_all, token_batches
from .decoding import combine_log_probs
from .errors import ConfigError, DataError
from .evaluate import evaluate
from .fusion import merge_checkpoints
from .inference import check_same_vocabulary

Metric = Literal["bleu", "chrf", "loss"]
Purpose = Literal["ensemble", "merge"]
TEST_FOLDERS = frozenset({"test", "tests", "testset", "test-set", "test_set", "testing"})
_TEST_NAME = re.compile("test", re.IGNORECASE)
MIN_STEP = 0.01


@dataclass
class TuneResult:
    """The best weights found, their dev score and every candidate tried (``trials``: weights, score)."""

    weights: list[float]
    score: float
    metric: str
    purpose: str
    checkpoints: list[str]
    src: str
    ref: str
    combine: str = "prob"
    trials: list[tuple[list[float], float]] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"


def looks_like_test_data(path: str | Path) -> bool:
    """True when the file name contains ``test`` (``test_2016_flickr.en.gz``, ``newstest2014.de``,
    ``SciTLDR-A_test.jsonl.gz``) or a folder on its path is named ``test``/``tests``/``testset``/``testing``."""
    path = Path(path)
    return bool(_TEST_NAME.search(path.name)) or any(part.lower() in TEST_FOLDERS for part in path.parts[:-1])


def check_not_test_data(paths: Sequence[str | Path], allow: bool) -> None:
    flagged = [str(p) for p in paths if looks_like_test_data(p)]
    if flagged and not allow:
        raise DataError(f"{', '.join(flagged)} looks like test data (its name contains 'test' or it lies in a "
                        "test folder): tune on a development set, or pass --allow-test-data if it is not test data")


def simplex_candidates(current: Sequence[float], member: int, step: float) -> list[list[float]]:
    """``current`` with member ``member`` set to each multiple of ``step`` in [0, 1], the others rescaled
    to share the rest in their current proportions (equally when they are all zero)."""
    others = sum(w for i, w in enumerate(current) if i != member)
    count = len(current) - 1
    out = []
    for k in range(round(1 / step) + 1):
        value = min(1.0, k * step)
        rest = 1.0 - value
        row = [rest * (w / others if others > 0 else 1 / count) for w in current]
        row[member] = value
        out.append([round(w, 6) for w in row])
    return out


def search(score: Callable[[list[float]], float], members: int, *, step: float = 0.1, max_passes: int = 3,
           ) -> tuple[list[float], float, list[tuple[list[float], float]]]:
    """Maximise ``score`` over the weight simplex; returns (best weights, best score, every trial)."""
    if not MIN_STEP <= step <= 0.5:  # each grid point is one decode of the dev set: 1/step of them per member
        raise ConfigError(f"--step must be in [{MIN_STEP}, 0.5], got {step}")
    seen: dict[tuple[float, ...], float] = {}
    trials: list[tuple[list[float], float]] = []

    def value(weights: list[float]) -> float:
        key = tuple(weights)
        if key not in seen:
            seen[key] = score(weights)
            trials.append((weights, seen[key]))
        return seen[key]

    best = [round(1 / members, 6)] * members
    best_score = value(best)
    order = [0] if members == 2 else list(range(members))  # two members: one sweep is the whole grid
    for _ in range(max_passes if members > 2 else 1):
        improved = False
        for member in order:
            for candidate in simplex_candidates(best, member, step):
                result = value(candidate)
                if result > best_score:
                    best, best_score, improved = candidate, result, True
        if not improved:
            break
    return best, best_score, trials


def tune_weights(checkpoints: Sequence[str | Path], src: str | Path, ref: str | Path, *, metric: Metric = "bleu",
                 purpose: Purpose = "ensemble", step: float = 0.1, max_passes: int = 3, combine: str = "prob",
                 allow_test_data: bool = False, device: str = "cpu", log: Callable[[str], None] | None = None,
                 **decoding) -> TuneResult:
    """Tune ensemble weights (``purpose='ensemble'``) or linear-merge coefficients (``'merge'``) of
    ``checkpoints`` on the dev pair ``src``/``ref``; ``decoding`` options (beam, lenpen, ...) as in
    :func:`~hybridformer.evaluate` for bleu/chrf."""
    if len(checkpoints) < 2:
        raise ConfigError("tune-weights needs at least two checkpoints (one weight each)")
    if metric not in ("bleu", "chrf", "loss"):
        raise ConfigError(f"--metric {metric!r}: choose bleu, chrf or loss")
    if purpose not in ("ensemble", "merge"):
        raise ConfigError(f"--for {purpose!r}: choose ensemble or merge")
    check_not_test_data([src, ref], allow_test_data)
    sources, references = read_all(src), read_all(ref)
    if len(sources) != len(references) or not references:
        raise DataError(f"{src} has {len(sources)} lines and {ref} {len(references)}: they must pair up, non-empty")
    configs = [load_config_file(p) for p in checkpoints]
    if not all(cfg.is_seq2seq for cfg in configs):
        raise ConfigError("tune-weights scores --src/--ref pairs; every checkpoint must be an encoder_decoder")
    check_same_vocabulary(checkpoints, configs, [load_tokenizer(p) for p in checkpoints])  # as ensembles do
    members = [load_checkpoint(p, device) for p in checkpoints] if purpose == "ensemble" else []
    with tempfile.TemporaryDirectory(prefix="hybridformer-tune-") as tmp:

        def score(weights: list[float]) -> float:
            """The dev score of one candidate, higher is better (the negated loss for ``loss``)."""
            if purpose == "ensemble":
                models, member_weights = members, weights
            else:
                merged = merge_checkpoints(checkpoints, "linear", Path(tmp) / "merged", weights=weights)
                models, member_weights = [load_checkpoint(merged, device)], [1.0]
            if metric == "loss":
                result = -teacher_forced_loss(models, member_weights, sources, references, combine=combine)
            else:
                result = evaluate(models, sources, references, metric=metric, device=device,
                                  weights=member_weights if purpose == "ensemble" else None, combine=combine,
                                  **decoding).score
            if log is not None:
                log(f"weights {', '.join(f'{w:.3g}' for w in weights)}: {metric} {abs(result):.4f}")
            return result

        best, best_score, trials = search(score, len(checkpoints), step=step, max_passes=max_passes)
    sign = -1.0 if metric == "loss" else 1.0
    return TuneResult(best, sign * best_score, metric, purpose, [str(p) for p in checkpoints], str(src), str(ref),
                      combine, [(w, sign * s) for w, s in trials])


@dataclass
class DecodingTuneResult:
    """The best beam size and length penalty on the dev set and every grid point tried (beam, lenpen, score)."""

    beam: int
    lenpen: float
    score: float
    metric: str
    checkpoints: list[str]
    src: str
    ref: str
    weights: list[float] | None = None
    trials: list[tuple[int, float, float]] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"


def tune_decoding(checkpoints: Sequence[str | Path], src: str | Path, ref: str | Path, *,
                  beams: Sequence[int] = (4, 5), lenpens: Sequence[float] = (0.6, 0.8, 1.0, 1.2, 1.4),
                  metric: Literal["bleu", "chrf"] = "bleu", weights: Sequence[float] | None = None,
                  combine: str = "prob", allow_test_data: bool = False, device: str = "cpu",
                  log: Callable[[str], None] | None = None, **decoding) -> DecodingTuneResult:
    """Decode the dev pair ``src``/``ref`` at every (beam, lenpen) of the grid and keep the best; the
    checkpoints (an ensemble with ``weights`` when several) are loaded once. Ties keep the earlier
    point, so smaller beams and lenpens listed first win them."""
    if metric not in ("bleu", "chrf"):
        raise ConfigError(f"--metric {metric!r}: choose bleu or chrf (scores of decoded text)")
    if not beams or not lenpens or min(beams) < 1:
        raise ConfigError("tune-decoding needs at least one beam size (>= 1) and one length penalty")
    check_not_test_data([src, ref], allow_test_data)
    sources, references = read_all(src), read_all(ref)
    models = [load_checkpoint(p, device) for p in checkpoints]
    best: tuple[int, float, float] | None = None
    trials: list[tuple[int, float, float]] = []
    for beam in beams:
        for lenpen in lenpens:
            score = evaluate(models, sources, references, metric=metric, device=device, weights=weights,
                             combine=combine, beam=beam, lenpen=lenpen, **decoding).score
            trials.append((beam, lenpen, score))
            if log is not None:
                log(f"beam {beam} lenpen {lenpen:g}: {metric} {score:.4f}")
            if best is None or score > best[2]:
                best = trials[-1]
    return DecodingTuneResult(best[0], best[1], best[2], metric, [str(p) for p in checkpoints], str(src), str(ref),
                              list(weights) if weights is not None else None, trials)


@torch.no_grad()
def teacher_forced_loss(ckpts: Sequence[Checkpoint], weights: Sequence[float], sources: Sequence[str],
                        references: Sequence[str], *, combine: str = "prob", batch_tokens: int = 4096) -> float:
    """Cross-entropy (nats per reference token, EOS included) of the references under the weighted
    ensemble of ``ckpts``, combined per position exactly as ensemble decoding combines them."""
    cfg, tokenizer = ckpts[0].config, ckpts[0].tokenizer
    total = sum(weights)
    weights = [w / total for w in weights]
    src = [encode_source(tokenizer, line, cfg) for line in sources]
    tgt = [encode_target(tokenizer, line, cfg) for line in references]
    nll, tokens = 0.0, 0
    for batch in token_batches([len(s) + len(t[0]) for s, t in zip(src, tgt, strict=True)], batch_tokens):
        inputs, labels = pad([tgt[i][0] for i in batch], cfg.pad_id), pad([tgt[i][1] for i in batch], cfg.pad_id)
        source = pad([src[i] for i in batch], cfg.pad_id)
        log_probs = torch.stack([torch.log_softmax(c.model.eval()(source, inputs).float(), dim=-1) for c in ckpts])
        members, rows, length, vocab = log_probs.shape
        combined = combine_log_probs(log_probs.view(members, rows * length, vocab), weights, combine)
        picked = combined.gather(1, labels.view(-1, 1)).squeeze(1)
        mask = labels.view(-1).ne(cfg.pad_id)
        nll -= float(picked[mask].sum())
        tokens += int(mask.sum())
    return nll / max(tokens, 1) if math.isfinite(nll) else math.inf


def read_weights_file(path: str | Path) -> list[float]:
    """The ``weights`` of a ``tune-weights`` JSON file (or a bare JSON list of numbers)."""
    data = structured.read(path, yaml_syntax=False, finite=True, limit=2**20, error=DataError)
    weights = data.get("weights") if isinstance(data, dict) else data
    if not isinstance(weights, list) or not weights or not all(
            isinstance(w, int | float) and not isinstance(w, bool) for w in weights):
        raise DataError(f"--weights @{path}: expected {{\"weights\": [numbers]}} as written by tune-weights")
    return [float(w) for w in weights]
