"""Request bodies, validated strictly at the edge: unknown fields, wrong types and out-of-range values are 422.

No field can name a file, a checkpoint or a device: the server decodes only with what its command
line loaded. ``model`` in the OpenAI routes is accepted for client compatibility and only echoed.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, protected_namespaces=())


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


class _OpenAIRequest(_Strict):
    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: Literal[1] = 1
    stream: bool = False
    seed: int | None = Field(None, ge=0, lt=2**63)
    stop: str | list[str] | None = None
    user: str | None = None

    def options(self, default_max_tokens: int) -> dict:
        """OpenAI sampling semantics: temperature 0 is greedy search, otherwise nucleus sampling."""
        budget = {"max_len_a": 0.0, "max_len_b": self.max_tokens or default_max_tokens}
        if self.temperature == 0.0:
            return {"beam": 1} | budget
        return {"sample": True, "temperature": self.temperature, "top_p": self.top_p, "seed": self.seed} | budget

    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class CompletionRequest(_OpenAIRequest):
    """``POST /v1/completions`` (OpenAI legacy completions)."""

    prompt: str | list[str] = Field(min_length=1)

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


class Message(_Strict):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatRequest(_OpenAIRequest):
    """``POST /v1/chat/completions``."""

    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)

    def options(self, default_max_tokens: int) -> dict:
        return super().options(self.max_completion_tokens or default_max_tokens)
