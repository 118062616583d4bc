"""The chat templates Gemma 3 and Phi-3 ship (their Jinja, abridged of image handling) render exactly as
transformers renders them: ``generate --chat`` prompts a converted model as its authors did."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")

from hybridformer.data.chat import ChatTemplate  # noqa: E402

GEMMA3 = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
"""
PHI3 = ("{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + "
        "'<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}"
        "{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}")
TOKENS = {"bos_token": "<bos>", "eos_token": "<eos>"}
CONVERSATION = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": " Hi! "},
                {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Capital of France?"}]


@pytest.mark.parametrize("template", [GEMMA3, PHI3], ids=["gemma3", "phi3"])
@pytest.mark.parametrize("prompt", [True, False])
def test_rendering_equals_transformers(template: str, prompt: bool) -> None:
    from transformers.utils.chat_template_utils import render_jinja_template

    theirs = render_jinja_template([CONVERSATION], chat_template=template, add_generation_prompt=prompt,
                                   **TOKENS)[0][0]
    assert ChatTemplate(template, TOKENS).render(CONVERSATION, add_generation_prompt=prompt) == theirs
    assert ChatTemplate(GEMMA3, TOKENS).prompt("Hi") == "<bos><start_of_turn>user\nHi<end_of_turn>\n" \
                                                        "<start_of_turn>model\n"
