"""The source model's tokenizer, kept as is: ``tokenizer.json`` (ids preserved), the chat template and
the special tokens, written into the checkpoint as ``tokenizer.json`` + ``tokenizer_config.json``.

The pad id is chosen so it never collides with text: many decoder-only models reuse EOS as padding,
but our models treat ``pad_id`` as "not a token" (masked as a key, never generated), so a pad equal
to BOS/EOS would mask every end-of-turn in a chat. The source's pad is kept when it is distinct,
otherwise the unknown token, otherwise another special token; docs/interop.md explains the choice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from ..data.side_files import SideFiles, read_tokenizer_config
from ..errors import CheckpointError, ConfigError
from ..filenames import CHAT_TEMPLATE, TOKENIZER
from .spm import marian_tokenizer

SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token", "cls_token", "sep_token")


@dataclass
class TokenizerFiles:
    tokenizer: Tokenizer | None = None
    chat_template: str | None = None
    special: dict[str, str] = field(default_factory=dict)  # bos_token/eos_token/... -> token text

    def token_id(self, key: str) -> int | None:
        token = self.special.get(key)
        return None if token is None or self.tokenizer is None else self.tokenizer.token_to_id(token)

    def side_files(self, config: Any) -> SideFiles:
        """What the converted checkpoint carries: the tokenizer, and a tokenizer_config.json holding the chat
        template and the special tokens as the model uses them."""
        if self.tokenizer is None:
            return SideFiles()
        special = {key: self.tokenizer.id_to_token(getattr(config, f"{key.split('_')[0]}_id"))
                   for key in ("bos_token", "eos_token", "pad_token")}  # pad outside the vocabulary: None
        if self.special.get("unk_token"):
            special["unk_token"] = self.special["unk_token"]
        return SideFiles(self.tokenizer, {**special, "chat_template": self.chat_template})


def _token_text(value: Any) -> str | None:
    """tokenizer_config.json writes special tokens as strings or as AddedToken dicts."""
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def from_folder(path: Path) -> TokenizerFiles:
    """A Hugging Face folder's tokenizer (none when it has no tokenizer.json)."""
    files = TokenizerFiles()
    tokenizer_file = path / TOKENIZER
    if tokenizer_file.is_file():
        try:
            files.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        except Exception as exc:  # tokenizers raises plain Exception subclasses
            raise CheckpointError(f"{tokenizer_file}: corrupt tokenizer ({exc})") from None
    elif (path / "source.spm").is_file():  # Marian: sentencepiece models + vocab.json (interop/spm.py)
        files.tokenizer = marian_tokenizer(path)
    else:
        return files
    config = read_tokenizer_config(path)
    files.special = {key: text for key in SPECIAL_KEYS if (text := _token_text(config.get(key)))}
    template = path / CHAT_TEMPLATE
    files.chat_template = template.read_text(encoding="utf-8") if template.is_file() else config.get("chat_template")
    if isinstance(files.chat_template, list):  # several named templates: keep the default one
        named = {t.get("name"): t.get("template") for t in files.chat_template if isinstance(t, dict)}
        files.chat_template = named.get("default")
    return files


def from_gguf(path: Path) -> TokenizerFiles:
    """The tokenizer stored in a GGUF file's metadata, rebuilt by transformers' GGUF converter (ids preserved)."""
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise ConfigError("reading a GGUF tokenizer needs transformers: pip install 'hybridformer[interop]'") from None
    try:
        hf = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except ValueError as exc:
        if "architecture" not in str(exc):
            raise CheckpointError(f"{path}: cannot rebuild the tokenizer from its metadata ({exc})") from None
        return _from_gguf_vocabulary(path)
    except Exception as exc:  # transformers raises many kinds for an unsupported or broken tokenizer
        raise CheckpointError(f"{path}: cannot rebuild the tokenizer from its metadata ({exc})") from None
    files = TokenizerFiles(Tokenizer.from_str(hf.backend_tokenizer.to_str()), hf.chat_template)
    files.special = {key: str(token) for key in SPECIAL_KEYS if (token := getattr(hf, key, None)) is not None}
    return files


def _from_gguf_vocabulary(path: Path) -> TokenizerFiles:
    """The tokenizer of a GGUF file whose architecture transformers' model loader does not know (Falcon-H1), from
    its ``tokenizer.ggml.*`` fields alone, by transformers' own GGUF tokenizer converter."""
    from transformers.integrations.gguf import convert_gguf_tokenizer, get_gguf_tokenizer

    try:
        architecture, vocabulary, config = get_gguf_tokenizer(str(path))
        backend, _ = convert_gguf_tokenizer(architecture, vocabulary)
    except Exception as exc:  # as above
        raise CheckpointError(f"{path}: cannot rebuild the tokenizer from its metadata ({exc})") from None
    files = TokenizerFiles(Tokenizer.from_str(backend.to_str()), config.get("chat_template"))
    files.special = {key: str(config[key]) for key in SPECIAL_KEYS if config.get(key) is not None}
    return files


def choose_special_ids(data: dict[str, Any], files: TokenizerFiles) -> None:
    """Fill ``bos_id``/``eos_id``/``pad_id`` of ModelConfig ``data`` (config.json first, then the tokenizer)."""
    for key, alias in (("bos", "cls"), ("eos", "sep")):  # BERT-style: [CLS] ... [SEP]
        if data.get(f"{key}_id") is None:
            data[f"{key}_id"] = files.token_id(f"{key}_token")
        if data.get(f"{key}_id") is None:
            data[f"{key}_id"] = files.token_id(f"{alias}_token")
    if data.get("arch") == "encoder_classifier" and data.get("eos_id") is None:  # never generates
        data["eos_id"] = data.get("pad_id", 0) + 1
    bos, eos = data.get("bos_id"), data.get("eos_id")
    if eos is None:
        raise ConfigError("config.json: no eos_token_id and no tokenizer eos_token; generation needs one")
    data["bos_id"] = eos if bos is None else bos  # a model without BOS: empty prompts start from EOS
    specials = [] if files.tokenizer is None else sorted(
        i for i, token in files.tokenizer.get_added_tokens_decoder().items() if token.special)
    # Without a tokenizer the ids mean nothing to us yet and the first free id is taken; with one, a model
    # whose every special token is BOS/EOS gets a pad outside the vocabulary (no row, no logit) rather than
    # losing a real token to padding.
    guesses = [0, data["vocab_size"] - 1] if files.tokenizer is None else []
    candidates = [data.get("pad_id"), files.token_id("pad_token"), files.token_id("unk_token"), *specials, *guesses,
                  data["vocab_size"]]
    data["pad_id"] = next(c for c in candidates if c is not None and c not in (data["bos_id"], eos))
