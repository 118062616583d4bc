"""Request bodies, validated strictly at the edge: unknown fields, wrong types and out-of-range values are 422.

No field can name a file, a checkpoint or a device: the server decodes only with what its command
line loaded. ``model`` in the OpenAI routes is accepted for client compatibility and only echoed. The OpenAI
routes ignore unknown fields, as the reference API does, but refuse (400) one they know and cannot honour.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, protected_namespaces=(), allow_inf_nan=False)


class GenerateRequest(_Strict):
    """``POST /v1/generate``: the decoding options of ``hybridformer generate``, one output per input."""

    inputs: list[str] = Field(min_length=1)
    beam: int | None = Field(None, ge=1, le=16)
    lenpen: float = 1.0
    sample: bool = False
    temperature: float = Field(1.0, gt=0.0)
    top_k: int = Field(0, ge=0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_len_a: float | None = Field(None, ge=0.0, le=16.0)
    max_len_b: int | None = Field(None, ge=0)
    no_repeat_ngram: int = Field(0, ge=0)
    early_stopping: bool = True
    seed: int | None = Field(None, ge=0, lt=2**63)

    @model_validator(mode="after")
    def _one_search(self) -> GenerateRequest:
        if self.sample and (self.beam or 1) > 1:
            raise ValueError("sample draws one continuation per input: use beam 1 (or leave it out) with sampling")
        return self

    def options(self) -> dict:
        return self.model_dump(exclude={"inputs"})


class _Lenient(BaseModel):
    """The OpenAI routes ignore fields they do not know, as the reference API does (clients send many)."""

    model_config = ConfigDict(extra="ignore", strict=True, protected_namespaces=(), allow_inf_nan=False)


class StreamOptions(_Lenient):
    include_usage: bool = False


class ResponseFormat(_Lenient):
    type: Literal["text"]


# Fields of the reference API this server cannot honour, with the values that ask for nothing (then they pass).
UNHONOURED = {"tools": (None, []), "tool_choice": (None, "none"), "functions": (None, []), "function_call": (None,),
              "logit_bias": (None, {}), "audio": (None,), "prediction": (None,), "suffix": (None, ""),
              "echo": (None, False), "best_of": (None, 1)}


class Unhonoured(Exception):
    """A request asks for something this server cannot do (a 400 naming the field, not a silent ignore)."""


class _OpenAIRequest(_Lenient):
    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=16)
    stream: bool = False
    stream_options: StreamOptions | None = None
    seed: int | None = Field(None, ge=0, lt=2**63)
    stop: str | list[str] | None = Field(None, max_length=16)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    response_format: ResponseFormat | None = None
    user: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _honourable(cls, data):
        if isinstance(data, dict):
            for name, harmless in UNHONOURED.items():
                if name in data and not any(data[name] == v and type(data[name]) is type(v) for v in harmless):
                    raise Unhonoured(f"{name}: not supported by this server (hybridformer serves plain text "
                                     "completions); leave it out")
            kind = data.get("response_format")
            if isinstance(kind, dict) and kind.get("type") != "text":
                raise Unhonoured(f"response_format: type {kind.get('type')!r} is not supported; this server "
                                 "answers {\"type\": \"text\"} only")
        return data

    def budget(self, default: int) -> int:
        return self.max_completion_tokens or self.max_tokens or default

    def options(self, default_max_tokens: int) -> dict:
        """OpenAI sampling semantics: temperature 0 is greedy search, otherwise nucleus sampling."""
        budget = {"max_len_a": 0.0, "max_len_b": self.budget(default_max_tokens),
                  "presence_penalty": self.presence_penalty, "frequency_penalty": self.frequency_penalty}
        if self.temperature == 0.0:
            return {"beam": 1} | budget
        return {"sample": True, "temperature": self.temperature, "top_p": self.top_p, "seed": self.seed} | budget

    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    def top_logprobs_count(self) -> int | None:
        """How many alternatives to report per token; None: no log-probabilities at all."""
        raise NotImplementedError


class CompletionRequest(_OpenAIRequest):
    """``POST /v1/completions`` (OpenAI legacy completions)."""

    prompt: str | list[str] = Field(min_length=1)
    logprobs: int | None = Field(None, ge=0, le=5)

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    def top_logprobs_count(self) -> int | None:
        return self.logprobs


class TextPart(_Lenient):
    type: Literal["text"]
    text: str


class Message(_Lenient):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]

    def turn(self) -> dict:
        """``{"role", "content"}`` for a chat template (a developer message is a system message)."""
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class ChatRequest(_OpenAIRequest):
    """``POST /v1/chat/completions``."""

    messages: list[Message] = Field(min_length=1)
    logprobs: bool = False
    top_logprobs: int = Field(0, ge=0, le=20)

    def top_logprobs_count(self) -> int | None:
        return self.top_logprobs if self.logprobs else None
