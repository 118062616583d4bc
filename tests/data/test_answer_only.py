"""Answer-only loss: a chat example's targets are its assistant answers (and their end-of-turn tokens) only, so
the prompt's positions carry exactly zero loss and zero gradient. Checked by hand on a two-turn conversation."""

from __future__ import annotations

import torch
from interop.hf_tiny import CHAT_TEMPLATE
from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers

from hybridformer.config import ModelConfig
from hybridformer.data.chat import ChatTemplate
from hybridformer.data.datasets import answer_examples
from hybridformer.train.losses import label_smoothed_nll

WORDS = ["<pad>", "<s>", "</s>", "user:", "assistant:", "hi", "yes", "how", "fine", "say", "it"]
CONFIG = ModelConfig(arch="decoder_lm", vocab_size=len(WORDS), pad_id=0, bos_id=1, eos_id=2)


def word_tokenizer() -> Tokenizer:
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<pad>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.add_special_tokens([AddedToken(t, special=True) for t in ("<pad>", "<s>", "</s>")])
    return tokenizer


def test_two_turn_conversation_trains_on_the_answers_only() -> None:
    template = ChatTemplate(CHAT_TEMPLATE, {"bos_token": "<s>", "eos_token": "</s>"})
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yes"},
                {"role": "user", "content": "how"}, {"role": "assistant", "content": "fine"}]
    pieces = template.segments(messages)
    assert pieces == [("<s>user: hi</s><s>assistant:", False), (" yes</s>", True),
                      ("<s>user: how</s><s>assistant:", False), (" fine</s>", True)]
    (example,), report = answer_examples([pieces], word_tokenizer(), block_size=64, source="t", config=CONFIG,
                                         answer_only=True)
    #            <s> user: hi </s> <s> assistant: yes </s> <s> user: how </s> <s> assistant: fine </s>
    ids = [1, 3, 5, 2, 1, 4, 6, 2, 1, 3, 7, 2, 1, 4, 8, 2]
    assert example.tgt_in == ids[:-1]
    assert example.tgt_out == [0, 0, 0, 0, 0, 6, 2, 0, 0, 0, 0, 0, 0, 8, 2]  # yes </s> ... fine </s>; 0 = ignored
    assert report.kept == 1

    logits = torch.randn(1, len(ids) - 1, len(WORDS), requires_grad=True)
    target = torch.tensor([example.tgt_out])
    loss, nll, count = label_smoothed_nll(logits, target, epsilon=0.0, ignore_index=CONFIG.pad_id)
    answers = [5, 6, 13, 14]  # the positions that predict yes, </s>, fine, </s>
    by_hand = -sum(logits[0, p].log_softmax(-1)[ids[p + 1]] for p in answers)
    assert count.item() == 4 and torch.allclose(nll, by_hand) and torch.allclose(loss, by_hand)
    loss.backward()
    prompt = [p for p in range(len(ids) - 1) if p not in answers]
    assert logits.grad[0, prompt].abs().max() == 0.0 and logits.grad[0, answers].abs().min() > 0.0

    (whole,), _ = answer_examples([pieces], word_tokenizer(), block_size=64, source="t", config=CONFIG,
                                  answer_only=False)
    assert whole.tgt_out == ids[1:]


def test_prompt_completion_records_end_with_eos_and_long_ones_are_counted() -> None:
    texts = [[("say", False), (" hi", True)], [("say it", False), (" yes yes yes yes", True)]]
    examples, report = answer_examples(texts, word_tokenizer(), block_size=4, source="t", config=CONFIG,
                                       answer_only=True, end=[CONFIG.eos_id])
    assert [(e.tgt_in, e.tgt_out) for e in examples] == [([9, 5], [5, 2])]  # say hi </s>: loss on hi, </s>
    assert report.dropped_long == 1
