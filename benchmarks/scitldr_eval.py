"""SciTLDR-A with hybridformer's ROUGE: the abstracts as generation input, and a system's TLDRs scored beside
the extractive reference points (lead-1 and the labelled oracle sentence).

SciTLDR scores a TLDR against every reference of a paper and keeps the best (``max``); the first
reference is the author's own TLDR. Both are reported, as ROUGE-1/2/Lsum F1 (hybridformer.metrics.rouge).
The extractive baselines are fixed (nothing trained or tuned), so scoring them on the test split is fair.

    python benchmarks/scitldr_eval.py sources ../shared/data/scitldr/SciTLDR-A_test.jsonl.gz > test.src
    python benchmarks/scitldr_eval.py score ../shared/data/scitldr/SciTLDR-A_test.jsonl.gz [--hyp test.hyp]
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


def read_papers(path: str) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def abstract(paper: dict) -> str:
    """The abstract as one line: its sentences joined with spaces (what the recipe trains on)."""
    return " ".join(" ".join(paper["source"]).split())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("sources", help="print one abstract per line").add_argument("jsonl")
    score = commands.add_parser("score", help="ROUGE of the baselines and of --hyp against the references")
    score.add_argument("jsonl", help="SciTLDR-A_{dev,test}.jsonl.gz")
    score.add_argument("--hyp", help="a system's TLDRs, one line per paper, in file order")
    args = parser.parse_args()
    papers = read_papers(args.jsonl)
    if args.command == "sources":
        print("\n".join(abstract(p) for p in papers))
        return
    targets = [p["target"] for p in papers]
    systems = {
        "lead-1 (first abstract sentence)": [p["source"][0] for p in papers],
        "oracle-1 (the sentence labelled as the TLDR's source)": [
            p["source"][p["source_labels"].index(1)] if 1 in p["source_labels"] else p["source"][0] for p in papers],
    }
    if args.hyp:
        with open(args.hyp, encoding="utf-8") as handle:
            hypotheses = handle.read().splitlines()
        if len(hypotheses) != len(papers):
            raise SystemExit(f"{args.hyp}: {len(hypotheses)} lines for {len(papers)} papers")
        systems[args.hyp] = hypotheses
    print(f"{len(papers)} papers, {sum(map(len, targets))} reference TLDRs")
    for name, hyps in systems.items():
        for kind, values in scores(hyps, targets).items():
            print(f"{name} | {kind} | " + " | ".join(f"{k} {v:.2f}" for k, v in values.items()))


if __name__ == "__main__":
    main()
