"""Extractive reference points on SciTLDR-A with hybridformer's ROUGE: lead-1 and the labelled oracle sentence.

SciTLDR scores a TLDR against every reference of a paper and keeps the best (``max``); the first
reference is the author's own TLDR. Both are reported, as ROUGE-1/2/Lsum F1 (hybridformer.metrics.rouge).
No model is trained or tuned here, so scoring the test split is fair: these are fixed baselines.

    PYTHONPATH=src python benchmarks/scitldr_baselines.py ../shared/data/scitldr/SciTLDR-A_test.jsonl.gz
"""

from __future__ import annotations

import argparse
import gzip
import json

from hybridformer.metrics import rouge

KEYS = ("rouge1", "rouge2", "rougeLsum")


def scores(hypotheses: list[str], targets: list[list[str]]) -> dict[str, dict[str, float]]:
    """Mean over papers of ROUGE against the first reference, and of the best over all references."""
    first = rouge(hypotheses, [t[0] for t in targets]).details
    best = dict.fromkeys(KEYS, 0.0)
    for hyp, refs in zip(hypotheses, targets, strict=True):
        per_ref = [rouge([hyp], [ref]).details for ref in refs]
        for key in KEYS:
            best[key] += max(d[key] for d in per_ref) / len(hypotheses)
    return {"first reference": {k: first[k] for k in KEYS}, "max over references": best}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("jsonl", help="SciTLDR-A_{dev,test}.jsonl.gz")
    args = parser.parse_args()
    with gzip.open(args.jsonl, "rt", encoding="utf-8") as handle:
        papers = [json.loads(line) for line in handle if line.strip()]
    targets = [p["target"] for p in papers]
    systems = {
        "lead-1 (first abstract sentence)": [p["source"][0] for p in papers],
        "oracle-1 (the sentence labelled as the TLDR's source)": [
            p["source"][p["source_labels"].index(1)] if 1 in p["source_labels"] else p["source"][0] for p in papers],
    }
    print(f"{len(papers)} papers, {sum(map(len, targets))} reference TLDRs")
    for name, hyps in systems.items():
        for kind, values in scores(hyps, targets).items():
            print(f"{name} | {kind} | " + " | ".join(f"{k} {v:.2f}" for k, v in values.items()))


if __name__ == "__main__":
    main()
