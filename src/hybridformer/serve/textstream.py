"""Output token ids -> text, piece by piece as tokens arrive, consistent with the text of the whole output.

A piece is sent only when later tokens cannot change it: the text is re-decoded from all ids so far
(a token's text can depend on its neighbours: byte-level pieces of one character, a decoder's
cleanup), an incomplete character (U+FFFD at the end) is held back, and so is the text of a trailing run
of byte-fallback tokens (``<0xE2>``: the run is decoded as one UTF-8 sequence, so a byte that decodes alone
can turn into U+FFFD when the next byte arrives), and so are the last
``len(longest stop) - 1`` characters, which could be the start of a stop string. Once a stop string
shows up nothing more is sent until :meth:`TextStream.finish` cuts the final text at the first one.
So the pieces always add up to the non-streamed text.
"""

from __future__ import annotations

import re
from functools import lru_cache

from tokenizers import Tokenizer

BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")


@lru_cache(maxsize=8)
def byte_tokens(tokenizer: Tokenizer) -> frozenset[int]:
    """Ids of the tokenizer's byte-fallback tokens (sentencepiece style), whose text depends on their neighbours."""
    return frozenset(i for token, i in tokenizer.get_vocab().items() if BYTE_TOKEN.fullmatch(token))


class TextStream:
    """``push(token) -> new text`` while decoding; ``finish(ids, budget) -> (rest, text, finish_reason)``."""

    def __init__(self, tokenizer: Tokenizer, stops: list[str]) -> None:
        self.tokenizer, self.stops = tokenizer, [s for s in stops if s]
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.ids: list[int] = []
        self.text = ""  # the text of all ids so far
        self.sent = 0  # characters handed out
        self.stopped = False
        self.bytes = byte_tokens(tokenizer)

    def push(self, token: int) -> str:
        self.ids.append(token)
        self.text = text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if self.stopped:
            return ""
        if any(s in text for s in self.stops):
            self.stopped = True  # where exactly to cut is decided on the whole output
            return ""
        settled = len(self.ids)
        while settled and self.ids[settled - 1] in self.bytes:
            settled -= 1
        if settled < len(self.ids):  # the byte run may still change: only the text before it is settled
            text = self.tokenizer.decode(self.ids[:settled], skip_special_tokens=True)
        safe = len(text) - self.hold
        while safe > self.sent and text[safe - 1] == "\ufffd":
            safe -= 1
        if safe <= self.sent:
            return ""
        piece, self.sent = text[self.sent:safe], safe
        return piece

    def finish(self, ids: list[int], budget: int) -> tuple[str, str, str]:
        """(the text not sent yet, the whole text, finish_reason) of the final output ``ids``."""
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        reason = "length" if len(ids) >= budget else "stop"
        cut = min((text.find(s) for s in self.stops if s in text), default=-1)
        if cut >= 0:
            text, reason = text[:cut], "stop"
        return text[self.sent:], text, reason
