"""Chat templates: an instruct model's Jinja template (kept from its source in ``tokenizer_config.json``)
turns messages into the exact prompt text the model was trained on.

Rendered like ``transformers``' ``apply_chat_template``: a sandboxed Jinja environment with
``trim_blocks``/``lstrip_blocks``, loop controls, ``raise_exception``, ``strftime_now`` and a
``tojson`` that does not escape HTML; the special tokens (``bos_token`` ...) are template variables.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..errors import DataError


@dataclass
class ChatTemplate:
    template: str
    special_tokens: dict[str, str] = field(default_factory=dict)  # bos_token, eos_token, ... -> text

    def render(self, messages: list[dict[str, Any]], *, add_generation_prompt: bool = True) -> str:
        import jinja2
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message: str) -> None:
            raise jinja2.exceptions.TemplateError(message)

        def tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None,
                   sort_keys: bool = False) -> str:
            return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                            extensions=["jinja2.ext.loopcontrols"])
        env.filters["tojson"] = tojson
        env.globals.update(raise_exception=raise_exception, strftime_now=lambda fmt: datetime.now().strftime(fmt))
        try:
            return env.from_string(self.template).render(
                messages=messages, tools=None, documents=None, add_generation_prompt=add_generation_prompt,
                **self.special_tokens)
        except jinja2.exceptions.TemplateError as exc:
            raise DataError(f"chat template: {exc}") from None
        except (ArithmeticError, LookupError, TypeError, ValueError, RecursionError) as exc:  # the template's own code
            raise DataError(f"chat template stopped: {type(exc).__name__}: {str(exc)[:200]}") from None

    def segments(self, messages: list[dict[str, Any]]) -> list[tuple[str, bool]]:
        """The rendered conversation in pieces, ``True`` for each assistant answer (its text and the end-of-turn
        markup the template puts after it: what answer-only training learns), ``False`` for the context."""
        pieces: list[tuple[str, bool]] = []
        done = ""
        for k, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            prompt = self.render(messages[:k], add_generation_prompt=True)
            full = self.render(messages[: k + 1], add_generation_prompt=False)
            if not prompt.startswith(done) or not full.startswith(prompt):
                raise DataError("chat template: the conversation before an answer does not render as the start of "
                                "the conversation with it, so the answers cannot be told apart; set "
                                "data.answer_only=false to train on the whole text")
            pieces += [(prompt[len(done):], False), (full[len(prompt):], True)]
            done = full
        rest = self.render(messages, add_generation_prompt=False)[len(done):]
        return [piece for piece in [*pieces, (rest, False)] if piece[0]]

    @classmethod
    def from_config(cls, tokenizer_config: dict[str, Any]) -> ChatTemplate | None:
        """The template a ``tokenizer_config.json`` holds, its special tokens as variables (None without one)."""
        template = tokenizer_config.get("chat_template")
        if not isinstance(template, str):
            return None
        return cls(template, {k: v for k, v in tokenizer_config.items() if k.endswith("_token") and isinstance(v, str)})

    def prompt(self, user_message: str) -> str:
        """The prompt for one user turn, ending where the assistant's answer starts."""
        return self.render([{"role": "user", "content": user_message}])
