"""From a recipe to what the loop needs: the ExperimentConfig (a fine-tune's filled in from its checkpoint),
a tokenizer, tokenized examples, a model config."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from .. import structured
from ..checkpoint import load_config_file
from ..config import DataConfig, ExperimentConfig, ModelConfig, apply_overrides, parse_config, read_config_file
from ..data.chat import ChatTemplate
from ..data.datasets import (
    DataReport,
    Example,
    Segments,
    answer_examples,
    lm_examples,
    read_jsonl,
    read_parallel,
    seq2seq_examples,
    split_text,
)
from ..data.side_files import tokenizer_config_beside
from ..data.tasks import make_task
from ..data.text import read_text
from ..data.tokenizer import check_special_ids, load_tokenizer_file, special_token_names, train_tokenizer
from ..errors import ConfigError
from ..filenames import CONFIG, TOKENIZER


def load_recipe(path: str | Path | None, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """The recipe at ``path`` (defaults when None) plus ``a.b=c`` overrides, a fine-tune's filled in."""
    data = apply_overrides(read_config_file(path) if path is not None else {}, list(overrides))
    return parse_config(ExperimentConfig, fine_tune_defaults(data))


def fine_tune_defaults(data: dict) -> dict:
    """Fine-tuning (``train.init_from``) starts from the checkpoint's model and tokenizer: its config.json
    is the model section (keys given in ``model`` override it, e.g. ``dropout``) and its tokenizer.json
    the default ``data.tokenizer``, so a recipe names only what changes. ``data`` is raw recipe data."""
    train = data.get("train")
    init_from = train.get("init_from") if isinstance(train, dict) else None
    if not isinstance(init_from, str) or not isinstance(data.get("model", {}), dict):
        return data  # nothing to fill in (a wrong type is the recipe's validation to report)
    file = Path(init_from) / CONFIG
    if not file.is_file():
        raise ConfigError(f"train.init_from: {init_from} is not a checkpoint directory (no {CONFIG})")
    saved = structured.read(file, mapping=True, error=ConfigError)
    if saved.get("quantization"):  # gradients cannot flow into packed int8/int4 buffers
        raise ConfigError(f"train.init_from: {init_from} holds {saved['quantization']} weights for inference; "
                          "fine-tune the float checkpoint it was quantized from, then quantize the result")
    data = {**data, "model": {**saved, **data.get("model", {})}}
    section, tokenizer = data.get("data", {}), Path(init_from) / TOKENIZER
    if isinstance(section, dict) and "tokenizer" not in section and tokenizer.is_file():
        data["data"] = {**section, "tokenizer": str(tokenizer)}
    return data


@dataclass
class RawData:
    """Untokenized text: pairs for seq2seq, one long text each for an LM."""

    train: list[tuple[str, str]] | str | list[Segments]  # pairs, one text, or answer-marked texts (chat, completion)
    valid: list[tuple[str, str]] | str | list[Segments]
    tokenizer: Tokenizer | None = None  # a generated task brings its own

    def texts(self) -> list[str]:
        """Training text to learn a tokenizer from (both sides: a joint vocabulary)."""
        if isinstance(self.train, str):
            return self.train.splitlines()
        if self.train and isinstance(self.train[0], list):  # answer-marked texts
            return ["".join(text for text, _ in example) for example in self.train]
        return [s for s, _ in self.train] + [t for _, t in self.train]


def read_raw(data: DataConfig, lm: bool) -> RawData:
    """Read the configured source; every missing piece is a ConfigError naming the data.* key."""
    if data.builtin is not None:
        if lm:
            raise ConfigError("data.builtin tasks are seq2seq; use model.arch=encoder_decoder")
        task = make_task(data.builtin, data.builtin_train, data.builtin_valid)
        return RawData(task.train, task.valid, task.tokenizer)
    if lm:
        if data.train_file is None:
            raise ConfigError("data.train_file: a language model needs a training text file")
        if data.chat or data.completion:
            train = _answer_texts(data, data.train_file)
            if data.valid_file is not None:
                return RawData(train, _answer_texts(data, data.valid_file))
            cut = len(train) - max(1, math.ceil(len(train) * data.valid_fraction))
            return RawData(train[:cut], train[cut:])
        train = _lm_text(data, data.train_file)
        if data.valid_file is None:
            train, valid = split_text(train, data.valid_fraction)
        else:
            valid = _lm_text(data, data.valid_file)
        return RawData(train, valid)
    if data.format == "jsonl":
        if data.train_file is None or data.valid_file is None:
            raise ConfigError("data.train_file and data.valid_file: JSONL seq2seq data needs both")
        fields = (data.src_field, data.tgt_field)
        return RawData(read_jsonl(data.train_file, fields), read_jsonl(data.valid_file, fields))
    if data.train_src is None or data.valid_src is None:
        raise ConfigError("data.train_src/train_tgt and data.valid_src/valid_tgt: seq2seq text data needs all four "
                          "(or data.format=jsonl with data.train_file, or data.builtin)")
    return RawData(read_parallel(data.train_src, data.train_tgt), read_parallel(data.valid_src, data.valid_tgt))


def _answer_texts(data: DataConfig, path: str) -> list[Segments]:
    """JSONL pairs as texts whose answers are marked: a user turn and the assistant's answer rendered by the
    chat template beside data.tokenizer (as `generate --chat` prompts), or a prompt and its completion."""
    pairs = read_jsonl(path, (data.src_field, data.tgt_field))
    if not data.chat:
        return [[(prompt, False), (completion, True)] for prompt, completion in pairs]
    template = ChatTemplate.from_config(tokenizer_config_beside(data.tokenizer))
    if template is None:
        raise ConfigError("data.chat: no chat template beside data.tokenizer (tokenizer_config.json "
                          "chat_template); set data.tokenizer or train.init_from to a converted instruct model")
    return [template.segments([{"role": "user", "content": user}, {"role": "assistant", "content": answer}])
            for user, answer in pairs]


def _lm_text(data: DataConfig, path: str) -> str:
    if data.format == "jsonl":
        return "\n".join(text for (text,) in read_jsonl(path, (data.tgt_field,))) + "\n"
    return read_text(path)


def get_tokenizer(cfg: ExperimentConfig, raw: RawData, saved: Path | None) -> Tokenizer:
    """The run's saved tokenizer (resume), the configured file, the task's own, or a freshly learned one."""
    source = None
    if saved is not None and saved.exists():
        tokenizer = load_tokenizer_file(source := saved)
    elif cfg.data.tokenizer is not None:
        tokenizer = load_tokenizer_file(source := cfg.data.tokenizer)
    elif raw.tokenizer is not None:
        tokenizer = raw.tokenizer
    else:
        tokenizer = train_tokenizer(raw.texts(), cfg.data.vocab_size, kind=cfg.data.tokenizer_kind)
    check_special_ids(tokenizer, "tokenizer", cfg.model.pad_id, cfg.model.bos_id, cfg.model.eos_id,
                      special_token_names(source))
    return tokenizer


def model_config_for(model: ModelConfig, tokenizer: Tokenizer, *, init_from: str | None = None) -> ModelConfig:
    """The model's vocabulary is the tokenizer's. Fine-tuning (``init_from``) keeps the starting checkpoint's
    vocabulary when it is larger: pretrained models often pad theirs past the tokenizer (Qwen2)."""
    size = tokenizer.get_vocab_size()
    if init_from is not None:
        size = max(size, load_config_file(init_from).vocab_size)
    return model.model_copy(update={"vocab_size": size})


def tokenize(cfg: ExperimentConfig, raw: RawData, tokenizer: Tokenizer,
             log: Callable[[str], None]) -> tuple[list[Example], list[Example]]:
    """Tokenized train and validation examples; what was dropped is logged, never hidden."""
    data = cfg.data
    out: list[list[Example]] = []
    for name, part in (("train", raw.train), ("valid", raw.valid)):
        if isinstance(part, str):
            examples, report = lm_examples(part, tokenizer, block_size=data.block_size, source=name, config=cfg.model)
        elif data.chat or data.completion:
            examples, report = answer_examples(part, tokenizer, block_size=data.block_size, source=name,
                                               config=cfg.model, answer_only=data.answer_only,
                                               end=[] if data.chat else [cfg.model.eos_id])
        else:
            examples, report = seq2seq_examples(part, tokenizer, max_src_len=data.max_src_len,
                                                max_tgt_len=data.max_tgt_len, source=name, config=cfg.model)
        if name == "train" and data.limit_train is not None:
            examples = examples[: data.limit_train]
            report.notes.append(f"limited to the first {len(examples)} (data.limit_train)")
        log_report(report, log)
        if not examples:
            raise ConfigError(f"no {name} examples left after filtering; check the data files and "
                              "data.max_src_len/max_tgt_len (data.block_size for a language model)")
        out.append(examples)
    return out[0], out[1]


def log_report(report: DataReport, log: Callable[[str], None]) -> None:
    log(report.summary() + "".join(f"; {note}" for note in report.notes))
