"""The one checkpoint loader: one capability check per task, one ensemble rule for text and labels."""

from __future__ import annotations

import pytest
import torch

from hybridformer import CheckpointError, load_checkpoint
from hybridformer.decoding import Ensemble, ModelScorer
from hybridformer.engines import load_engine
from hybridformer.inference import load_checkpoints, load_classifier


def test_capability_is_checked_per_task(tiny_checkpoint) -> None:
    seq2seq, classifier = tiny_checkpoint(), tiny_checkpoint("encoder_classifier")
    assert isinstance(load_engine(seq2seq).scorer, ModelScorer)
    assert isinstance(load_engine([seq2seq, seq2seq]).scorer, Ensemble)
    with pytest.raises(CheckpointError, match="is an encoder_classifier"):
        load_engine(classifier)
    with pytest.raises(CheckpointError, match="does not predict labels"):
        load_classifier(seq2seq)
    with pytest.raises(CheckpointError, match="must all be encoder_decoder or all decoder_lm"):
        load_checkpoints([seq2seq, tiny_checkpoint("decoder_lm")], task="evaluate")


def test_classifier_ensemble_averages_probabilities_with_weights(tiny_checkpoint) -> None:
    path = tiny_checkpoint("encoder_classifier")
    a, b = load_checkpoint(path), load_checkpoint(path)
    with torch.no_grad():
        for p in b.model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    tokens = torch.tensor([[5, 6, 7, 2], [8, 9, 2, 0]])
    pa, pb = (m.model.eval()(tokens).softmax(-1) for m in (a, b))
    single = load_classifier(a).probabilities(tokens)
    pair = load_classifier([a, b], weights=[3, 1]).probabilities(tokens)
    assert torch.allclose(single, pa, atol=1e-6)
    assert torch.allclose(pair, 0.75 * pa + 0.25 * pb, atol=1e-6)
    assert torch.allclose(pair.sum(-1), torch.ones(2), atol=1e-6)
