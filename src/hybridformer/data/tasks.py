"""Built-in generated seq2seq tasks: deterministic, offline, small enough to learn in minutes on a CPU.

``numbers``: a number in digits -> its English words (``"1204"`` -> ``"one thousand two hundred four"``),
which needs reordering, one-to-many output and long-range agreement, so a model that learns it
really translates. ``reverse``: a string of letters -> the same letters reversed, a pure
transduction check. Each task comes with its own character tokenizer, since its alphabet is
known in advance.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from ..errors import ConfigError
from ..filenames import TOKENIZER
from .tokenizer import char_tokenizer

Pair = tuple[str, str]

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = [(1_000_000, "million"), (1_000, "thousand"), (100, "hundred")]


def number_to_words(n: int) -> str:
    """English words for 0 <= n < 10**9, without "and" or hyphens: 1204 -> "one thousand two hundred four"."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    for value, name in _SCALES:
        if n >= value:
            head, rest = divmod(n, value)
            return f"{number_to_words(head)} {name}" + ("" if rest == 0 else " " + number_to_words(rest))
    raise AssertionError(n)  # unreachable: every n >= 100 meets a scale


def _numbers(rng: random.Random) -> Pair:
    digits = rng.randint(1, 7)  # log-uniform over magnitudes, so long numbers are as common as short ones
    n = rng.randint(0 if digits == 1 else 10 ** (digits - 1), 10**digits - 1)
    return str(n), number_to_words(n)


def _reverse(rng: random.Random) -> Pair:
    word = "".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 16)))
    return word, word[::-1]


TASKS: dict[str, tuple[Callable[[random.Random], Pair], str]] = {
    "numbers": (_numbers, string.digits + " " + "".join(_ONES + _TENS[2:] + [name for _, name in _SCALES])),
    "reverse": (_reverse, string.ascii_lowercase),
}


@dataclass
class Task:
    """Generated pairs split into train/valid/test (disjoint sources), plus the task's tokenizer."""

    name: str
    train: list[Pair]
    valid: list[Pair]
    test: list[Pair]
    tokenizer: Tokenizer

    def write(self, directory: str | Path) -> dict[str, Path]:
        """Write ``{split}.src`` / ``{split}.tgt`` and ``tokenizer.json``; returns the paths by name."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths = {}
        for split in ("train", "valid", "test"):
            pairs = getattr(self, split)
            for side, index in (("src", 0), ("tgt", 1)):
                path = directory / f"{split}.{side}"
                path.write_text("".join(pair[index] + "\n" for pair in pairs), encoding="utf-8")
                paths[f"{split}_{side}"] = path
        paths["tokenizer"] = directory / TOKENIZER
        self.tokenizer.save(str(paths["tokenizer"]))
        return paths


def make_task(name: str, n_train: int = 5000, n_valid: int = 300, seed: int = 0, n_test: int | None = None) -> Task:
    """Generate task ``name`` deterministically from ``seed``; no source string is in two splits."""
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; allowed: {', '.join(sorted(TASKS))}")
    generate, alphabet = TASKS[name]
    n_test = n_valid if n_test is None else n_test
    rng = random.Random(f"{name}:{seed}")
    wanted = n_train + n_valid + n_test
    pairs: dict[str, str] = {}
    for _ in range(wanted * 50):
        if len(pairs) == wanted:
            break
        src, tgt = generate(rng)
        pairs.setdefault(src, tgt)
    if len(pairs) < wanted:
        raise ConfigError(f"task {name!r} cannot generate {wanted} distinct examples; ask for fewer")
    items = list(pairs.items())
    return Task(name, items[:n_train], items[n_train: n_train + n_valid], items[n_train + n_valid:],
                char_tokenizer(alphabet))
