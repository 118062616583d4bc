"""Tiny random transformers models saved to a folder, and our conversion of them, for parity tests."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open

from hybridformer.interop.hf import bart, bert, marian, t5
from hybridformer.interop.hf.weights import convert_tensors
from hybridformer.models import build_model

MAPPINGS = {"bart": bart, "mbart": bart, "marian": marian, "t5": t5, "bert": bert, "roberta": bert}


def save_hf(model, folder: Path) -> Path:
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def convert_folder(folder: Path):
    """(our model, config) of a saved HF folder, through the architecture's mapping."""
    hf = json.loads((folder / "config.json").read_text())
    mapping = MAPPINGS[hf["model_type"]]
    with safe_open(str(folder / "model.safetensors"), "pt") as file:
        names = set(file.keys())
        cfg = mapping.model_config(hf, names, file.get_tensor)
        cfg = cfg.model_copy(update={"dropout": 0.0})
        state = dict(convert_tensors(mapping.weight_plan(cfg, names), file.get_tensor, names))
    model = build_model(cfg).eval()
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected, unexpected
    assert not missing, missing
    return model, cfg


def padded_batch(vocab: int, lengths: list[int], pad: int, low: int = 4, seed: int = 0) -> torch.Tensor:
    """Right-padded random tokens (ids >= low, none of them pad)."""
    gen = torch.Generator().manual_seed(seed)
    out = torch.full((len(lengths), max(lengths)), pad, dtype=torch.long)
    for row, n in enumerate(lengths):
        ids = torch.randint(low, vocab, (n,), generator=gen)
        ids[ids == pad] = low
        out[row, :n] = ids
    return out
