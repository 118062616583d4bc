"""The IMDB test reviews longer than a token budget, as JSONL for ``evaluate --labeled`` (issue 14, encoder case).

    python benchmarks/imdb_long_reviews.py ../shared/data/imdb/aclImdb_v1_train_test.tar.gz \
        runs/imdb512/tokenizer.json --longer-than 512 --limit 1000 --out runs/imdb-long.jsonl

Keeps every test review whose tokenization (without special tokens) exceeds ``--longer-than`` tokens,
then a seeded random subset of ``--limit`` of them; prints the counts.
"""

from __future__ import annotations

import argparse
import json
import random
import tarfile
from pathlib import Path

from tokenizers import Tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("archive", type=Path)
    parser.add_argument("tokenizer", type=Path)
    parser.add_argument("--longer-than", type=int, default=512)
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    tokenizer = Tokenizer.from_file(str(args.tokenizer))
    reviews, total = [], 0
    with tarfile.open(args.archive) as archive:
        for member in archive:
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) < 3 or parts[-3] != "test" or parts[-2] not in ("neg", "pos"):
                continue
            text = archive.extractfile(member).read().decode("utf-8")
            total += 1
            length = len(tokenizer.encode(text, add_special_tokens=False).ids)
            if length > args.longer_than:
                reviews.append({"text": text, "label": parts[-2], "tokens": length})
    random.Random(args.seed).shuffle(reviews)
    kept = sorted(reviews[: args.limit], key=lambda r: r["tokens"])
    with args.out.open("w", encoding="utf-8") as handle:
        for review in kept:
            handle.write(json.dumps(review, ensure_ascii=False) + "\n")
    lengths = [r["tokens"] for r in kept]
    print(f"{len(reviews)} of {total} test reviews exceed {args.longer_than} tokens; wrote {len(kept)} "
          f"(median {lengths[len(lengths) // 2]}, max {lengths[-1]} tokens, "
          f"{sum(r['label'] == 'pos' for r in kept)} pos) to {args.out}")


if __name__ == "__main__":
    main()
