"""``convert``: a Hugging Face folder or a GGUF file -> an ordinary hybridformer checkpoint directory.

The source's config becomes a validated ModelConfig (any setting that would change the computation
and is not supported is a one-line error naming it), the model is laid out on the ``meta`` device
to learn every tensor's name and shape, the source's tensor headers are checked against them (a wrong shape or
an integer dtype allocates nothing), and the weights are streamed into ``model.safetensors``
one tensor at a time. Every source tensor must be used: a leftover one would mean a different model.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .. import structured
from ..checkpoint import architecture_metadata, load_meta, write_checkpoint
from ..config import ModelConfig, parse_config
from ..errors import CheckpointError, ConfigError, DataError
from ..models import build_model
from ..outputs import prepare_output_dir
from ..tensorfile import TensorSpecs, write_safetensors
from . import tokenizer as tokenizers
from .folder import HFFolder
from .gguf import GGUFFile
from .hf import ARCHITECTURES, Architecture
from .rules import Rule, check_sources

IGNORED = ("rotary_emb.inv_freq", "masked_bias", "attn.bias")  # buffers some checkpoints save; not weights


def open_source(src: Path) -> tuple[HFFolder | GGUFFile, tokenizers.TokenizerFiles, str]:
    """The tensor source, its tokenizer and its format name (``hf`` or ``gguf``)."""
    if not src.exists():
        raise DataError(f"{src}: no such file or folder")
    if src.is_file():
        if src.suffix != ".gguf":
            raise DataError(f"{src}: expected a Hugging Face model folder or a .gguf file")
        try:
            source = GGUFFile(src)
        except (ZeroDivisionError, TypeError, ValueError, OverflowError) as exc:  # e.g. head_count 0
            raise ConfigError(f"{src}: the GGUF metadata holds an impossible value ({exc})") from None
        has_tokenizer = source.field("tokenizer.ggml.model") is not None
        return source, tokenizers.from_gguf(src) if has_tokenizer else tokenizers.TokenizerFiles(), "gguf"
    return HFFolder(src), tokenizers.from_folder(src), "hf"


def architecture(hf: dict[str, Any], where: Path) -> Architecture:
    model_type = hf.get("model_type")
    if model_type not in ARCHITECTURES:
        raise ConfigError(f"{where}: model_type={model_type!r} is not supported; supported: "
                          f"{', '.join(sorted(ARCHITECTURES))}")
    return ARCHITECTURES[model_type]


class Prefixed:
    """A source whose tensor names lack the architecture's ``prefix`` (GPT-2 saved from ``GPT2Model``, as the
    original checkpoints are), seen with it so one set of rules serves both layouts."""

    def __init__(self, source: HFFolder | GGUFFile, prefix: str) -> None:
        self.source, self.prefix, self.config = source, prefix, source.config

    def keys(self) -> set[str]:
        return {self.prefix + name for name in self.source.keys()}

    def get(self, name: str) -> torch.Tensor:
        return self.source.get(name.removeprefix(self.prefix))

    def meta(self, name: str) -> torch.Tensor:
        return self.source.meta(name.removeprefix(self.prefix))


class Folded:
    """A source whose tensors pass its architecture's ``fold`` as they are read (Falcon-H1's multipliers)."""

    def __init__(self, source: HFFolder | GGUFFile | Prefixed, weight) -> None:
        self.source, self.weight, self.config = source, weight, source.config

    def keys(self) -> set[str]:
        return self.source.keys()

    def get(self, name: str) -> torch.Tensor:
        return self.weight(name, self.source.get(name))

    def meta(self, name: str) -> torch.Tensor:
        return self.weight(name, self.source.meta(name))


Source = HFFolder | GGUFFile | Prefixed | Folded


def with_prefix(source: Source, where: Path) -> Source:
    """``source`` as its architecture's rules name and read its tensors."""
    arch = architecture(source.config, where)
    if arch.prefix and not any(name.startswith(arch.prefix) for name in source.keys()):
        source = Prefixed(source, arch.prefix)
    return source if arch.fold is None else Folded(source, arch.fold(source.config))


def plan(source: Source, files: tokenizers.TokenizerFiles, where: Path) -> tuple[ModelConfig, list[Rule]]:
    """The ModelConfig and tensor rules for ``source``, checked against its tensors."""
    arch = architecture(source.config, where)
    try:
        data = arch.model_config(source.config)
    except ConfigError:
        raise
    except KeyError as exc:
        raise ConfigError(f"{where}: the model config lacks {exc.args[0]!r}, which a "
                          f"{source.config.get('model_type')} model needs") from None
    except (TypeError, ValueError, ZeroDivisionError, OverflowError) as exc:
        raise ConfigError(f"{where}: the model config holds an impossible value ({exc})") from None
    available = source.keys()
    check_layer_counts(data, available, where)
    if arch.head is not None:
        data["tie_embeddings"] = arch.head not in available
    tokenizers.choose_special_ids(data, files)
    data["extra_eos_ids"] = [i for i in listed_eos(source.config, where)
                             if i != data["eos_id"] and 0 <= i < data["vocab_size"]]
    try:
        cfg = parse_config(ModelConfig, data)
    except ConfigError as exc:
        raise ConfigError(f"{where}: the converted config is invalid: {exc}") from None
    rules = arch.rules(cfg)
    check_sources(rules, available, str(where))
    used = {name for rule in rules for name in rule.theirs}
    extra = sorted(n for n in available - used if not n.endswith(IGNORED) and not n.startswith(arch.unused))
    if extra:
        raise CheckpointError(f"{where}: tensor(s) the {source.config.get('model_type')} mapping does not use: "
                              f"{', '.join(extra[:3])}{' ...' if len(extra) > 3 else ''} (an unsupported variant)")
    return cfg, rules


def listed_eos(config: dict[str, Any], where: Path) -> list[int]:
    """Every EOS id the source lists, in order: config.json's ``eos_token_id`` (an id or a list) and
    generation_config.json's, where chat models list their end-of-turn token (Gemma 3's ``<end_of_turn>``)."""
    generation = where / "generation_config.json"
    lists = [config.get("eos_token_id")]
    if where.is_dir() and generation.is_file():
        lists.append(structured.read(generation, mapping=True, error=CheckpointError).get("eos_token_id"))
    ids = [i for value in lists for i in (value if isinstance(value, list) else [value]) if isinstance(i, int)]
    return list(dict.fromkeys(ids))


def source_architecture(checkpoint: str | Path | None) -> Architecture | None:
    """The spec of the architecture ``checkpoint`` was converted from, if any."""
    return None if checkpoint is None else ARCHITECTURES.get(load_meta(checkpoint).get("model_type"))


def check_layer_counts(data: dict[str, Any], available: set[str], where: Path) -> None:
    """A layer count must be backed by the tensors present, checked before any rule or model is laid out
    (``num_hidden_layers: 1000000000`` would otherwise list a billion rules)."""
    stacks: dict[str, int] = {}
    for name in available:
        found = re.match(r"(.*?)\.(\d+)\.", name)
        if found:
            stacks[found.group(1)] = max(stacks.get(found.group(1), 0), int(found.group(2)) + 1)
    held = max(stacks.values(), default=0)
    for role in ("encoder", "decoder"):
        layers = (data.get(role) or {}).get("layers")
        if isinstance(layers, int) and not isinstance(layers, bool) and layers > held:
            raise CheckpointError(f"{where}: the config claims {layers:,} {role} layers but the weights hold "
                                  f"{held}; the config does not belong to these weights")


def build_checked(rule: Rule, source: Source, where: Path) -> torch.Tensor:
    """Our tensor ``rule.ours`` from the source: source parts that do not fit together (a wrong-shaped tensor)
    or NaN / infinite values (which would decode to garbage without an error) are a CheckpointError."""
    try:
        tensor = rule.build(source.get)
    except RuntimeError as exc:
        raise CheckpointError(f"{where}: the source tensors {', '.join(rule.theirs)} do not fit the config "
                              f"({str(exc).splitlines()[0][:160]})") from None
    if not bool(torch.isfinite(tensor).all()):
        raise CheckpointError(f"{where}: {', '.join(rule.theirs)} hold(s) NaN or infinite values; the source is "
                              "corrupt")
    return tensor


def check_headers(specs: TensorSpecs, rules: list[Rule], source: Source,
                  where: Path) -> None:
    """Every rule run on the ``meta`` device from the source's headers (shapes, dtypes): a wrong-shaped or integer
    tensor is refused before anything is read, allocated or written (NaN needs the data: :func:`build_checked`)."""
    for rule in rules:
        try:
            shape = tuple(rule.build(source.meta).shape)
        except RuntimeError:
            shape = None
        if shape != specs[rule.ours][1]:
            shapes = ", ".join(f"{name} {tuple(source.meta(name).shape)}" for name in rule.theirs)
            raise CheckpointError(f"{where}: {shapes} do not fit the config, which needs {rule.ours} of shape "
                                  f"{specs[rule.ours][1]}; the config does not belong to these weights")


def tensor_specs(cfg: ModelConfig, rules: list[Rule]) -> TensorSpecs:
    """Name -> (shape, dtype) of every tensor the checkpoint stores, from the model built on ``meta``."""
    with torch.device("meta"):
        state = build_model(cfg).state_dict(keep_vars=True)
    ours = {rule.ours for rule in rules}
    covered = {id(state[name]) for name in ours if name in state}  # tied tensors are stored once
    uncovered = sorted(name for name, tensor in state.items() if name not in ours and id(tensor) not in covered)
    unknown = sorted(ours - set(state))
    if uncovered or unknown:
        raise CheckpointError(f"internal mapping error: tensors uncovered {uncovered[:3]}, unknown {unknown[:3]}")
    return {rule.ours: ("F32", tuple(state[rule.ours].shape)) for rule in rules}


def convert(src: str | Path, out: str | Path, *, overwrite: bool = False,
            progress: Callable[[int, int], None] | None = None) -> Path:
    """Convert a Hugging Face model folder or a ``.gguf`` file into a hybridformer checkpoint at ``out``.

    The result loads with :func:`hybridformer.load_checkpoint` and works with every command; the
    tokenizer (ids preserved), chat template and special tokens travel with it. ``progress(done, total)``
    follows the tensors written.
    """
    src, out = Path(src), prepare_output_dir(out, overwrite=overwrite, inputs=[src])
    source, files, fmt = open_source(src)
    source = with_prefix(source, src)
    cfg, rules = plan(source, files, src)
    specs = tensor_specs(cfg, rules)
    check_headers(specs, rules, source, src)
    by_name = {rule.ours: rule for rule in rules}
    meta = {"converted_from": str(src), "format": fmt, "model_type": source.config.get("model_type")}

    def weights(file: Path) -> None:
        write_safetensors(file, specs, lambda name: build_checked(by_name[name], source, src),
                          metadata={"format": "pt", **architecture_metadata(cfg)},  # fingerprint: load_checkpoint
                          progress=progress)

    return write_checkpoint(out, cfg, files.side_files(cfg), weights=weights, meta=meta)
