"""Checkpoint directories: ``model.safetensors`` + ``config.json`` (+ ``tokenizer.json``, ``tokenizer_config.json``,
``meta.json``), written atomically by one writer.

Loading never unpickles anything: weights are safetensors, the config is JSON validated by
pydantic, the tokenizer is HF tokenizers' JSON. Every failure is a :class:`CheckpointError`
naming the path and what is wrong. A :class:`Checkpoint` carries its side files (tokenizer, chat
template, special tokens) and :func:`write_checkpoint` writes them again, so no command drops them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_model
from tokenizers import Tokenizer
from torch import nn

from . import structured
from .config import ModelConfig, parse_config
from .data.chat import ChatTemplate
from .data.side_files import SideFiles, load_tokenizer, read_tokenizer_config
from .devices import check_device
from .errors import CheckpointError, ConfigError, brief
from .filenames import ADAPTER_CONFIG, CONFIG, META, TOKENIZER, WEIGHTS
from .models import build_model
from .tensorfile import DTYPES, TensorSpecs

ARCHITECTURE, FINGERPRINT = "hybridformer.architecture", "hybridformer.fingerprint"  # safetensors metadata keys
VOCABULARY = "hybridformer.vocabulary"  # sha256 of the tokenizer's token -> id table the weights were saved with


@dataclass
class Checkpoint:
    model: nn.Module
    config: ModelConfig
    tokenizer: Tokenizer | None
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)
    tokenizer_config: dict[str, Any] = field(default_factory=dict)  # tokenizer_config.json: chat template, specials

    @property
    def side_files(self) -> SideFiles:
        """What a command writing a model made from this one must carry over (tokenizer, chat template)."""
        return SideFiles(self.tokenizer, self.tokenizer_config)

    @property
    def chat_template(self) -> ChatTemplate | None:
        return self.side_files.chat_template


def save_checkpoint(
    path: str | Path, model: nn.Module | None, config: ModelConfig, tokenizer: Tokenizer | SideFiles | None = None,
    *, meta: dict[str, Any] | None = None, write_extra: Callable[[Path], None] | None = None,
) -> Path:
    """Write ``model`` as a checkpoint directory with :func:`write_checkpoint`; ``tokenizer`` is the tokenizer
    alone or all the side files (``Checkpoint.side_files``: a converted model's chat template too).

    Without a ``model`` no weights are written: a LoRA checkpoint's ``write_extra`` adds its adapter instead.
    """
    side = tokenizer if isinstance(tokenizer, SideFiles) else SideFiles(tokenizer)

    def weights(file: Path) -> None:
        vocabulary = {VOCABULARY: vocabulary_digest(side.tokenizer)} if side.tokenizer is not None else {}
        save_model(model, str(file), metadata={"format": "pt", **architecture_metadata(config), **vocabulary})

    return write_checkpoint(path, config, side, weights=weights if model is not None else None, meta=meta,
                            write_extra=write_extra)


def write_checkpoint(
    path: str | Path, config: ModelConfig, side: SideFiles, *, weights: Callable[[Path], None] | None,
    meta: dict[str, Any] | None = None, write_extra: Callable[[Path], None] | None = None,
) -> Path:
    """The one checkpoint writer: ``weights(file)`` writes ``model.safetensors`` (from a model, or streamed tensor
    by tensor), then ``config.json``, the side files and ``meta.json``, all in one atomic write
    (:func:`write_checkpoint_dir`). ``write_extra(tmp_dir)`` adds a command's own files (optimizer state, an
    adapter) to the same write."""

    def fill(tmp: Path) -> None:
        if weights is not None:
            weights(tmp / WEIGHTS)
        (tmp / CONFIG).write_text(json.dumps(config.model_dump(), indent=2))
        side.write(tmp)
        if meta:
            (tmp / META).write_text(json.dumps(meta, indent=2))
        if write_extra is not None:
            write_extra(tmp)

    return write_checkpoint_dir(path, fill)


def _fsync_tree(directory: Path) -> None:
    for file in directory.iterdir():
        if file.is_dir():  # e.g. the ``adapter/`` beside an exported base model
            _fsync_tree(file)
            continue
        with open(file, "rb") as handle:
            os.fsync(handle.fileno())
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _normal_modes(directory: Path) -> None:
    """Every file as an ordinary new file would be (0644 under the usual umask): safetensors writes its files
    0600 through a temp file, which made a checkpoint's weights unreadable to the group only after some commands."""
    umask = os.umask(0)
    os.umask(umask)
    for file in directory.rglob("*"):
        if file.is_file() and not file.is_symlink():
            file.chmod(0o666 & ~umask)


def _replace_dir(new: Path, dest: Path) -> None:
    old = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex[:8]}"
    if dest.exists():
        os.replace(dest, old)
    os.replace(new, dest)
    shutil.rmtree(old, ignore_errors=True)


def load_config_file(path: str | Path) -> ModelConfig:
    """The validated ModelConfig of a checkpoint directory."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such checkpoint directory")
    config_file = path / CONFIG
    if not config_file.is_file():
        raise CheckpointError(f"{path}: missing {CONFIG}")
    data = structured.read(config_file, error=CheckpointError)
    try:
        return parse_config(ModelConfig, data)
    except ConfigError as exc:
        raise CheckpointError(f"{config_file}: invalid model config: {exc}") from None


def load_weights(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The raw tensors of ``path/model.safetensors`` (a missing or corrupt file is a CheckpointError)."""
    weights = Path(path) / WEIGHTS
    if not weights.is_file():
        raise missing_weights(Path(path))
    try:
        return load_file(str(weights), device=str(device))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights}: corrupt or truncated safetensors file ({exc})") from None


def load_state_into(model: nn.Module, tensors: dict[str, torch.Tensor], source: Path) -> None:
    """Load ``tensors`` into ``model``, checking names, shapes and dtypes; tied parameters may appear once."""
    groups = check_fit(model.state_dict(keep_vars=True),
                       {name: (t.dtype, tuple(t.shape)) for name, t in tensors.items()}, source)
    full = {}
    for names in groups:
        present = next(n for n in names if n in tensors)
        full.update({n: tensors[present] for n in names})
    model.load_state_dict(full, strict=True)


def missing_weights(path: Path) -> CheckpointError:
    if (path / ADAPTER_CONFIG).is_file():
        return CheckpointError(f"{path} is a LoRA adapter: it runs on its base model (`--adapter {path}` with the "
                               "base checkpoint; Python: hybridformer.lora.load_with_adapter)")
    return CheckpointError(f"{path}: missing {WEIGHTS}")


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the model from ``config.json`` and load its safetensors weights (nothing is unpickled).

    Before anything is built, the weights file's header must fit the config: the architecture
    fingerprint it was saved with, every tensor's shape and dtype (checked against the model built
    on the meta device, so a config claiming a 2**40 vocabulary allocates nothing). After loading,
    every weight must be finite.
    """
    path, device = Path(path), check_device(device)
    config = load_config_file(path)
    specs, metadata = weight_specs(path)
    check_weight_specs(config, specs, path / WEIGHTS)
    check_architecture(config, metadata, path)
    meta = load_meta(path)
    check_meta(meta, config, path / META)
    tokenizer = load_tokenizer(path)
    check_vocabulary(tokenizer, metadata, path)
    with random_init_skipped():  # every tensor is in the file (checked above) and overwrites the init
        model = build_model(config)
    copy_weights_into(model, path / WEIGHTS)
    return Checkpoint(model.to(device).eval(), config, tokenizer, path, meta, read_tokenizer_config(path))


RANDOM_INITS = ("uniform_", "normal_", "trunc_normal_", "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_",
                "xavier_normal_", "orthogonal_")


@contextmanager
def random_init_skipped() -> Iterator[None]:
    """``torch.nn.init``'s random initialisers do nothing inside (a model built only to be overwritten: SmolLM2's
    drew 0.66 CPU-s of random numbers per load). No buffer that must survive a load is random."""
    saved = {name: getattr(nn.init, name) for name in RANDOM_INITS}
    try:
        for name in RANDOM_INITS:
            setattr(nn.init, name, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for name, fn in saved.items():
            setattr(nn.init, name, fn)


def copy_weights_into(model: nn.Module, weights: Path) -> None:
    """Load a safetensors file into ``model`` (whose names and shapes :func:`check_weight_specs` has checked)
    one layer's tensors per ``load_state_dict`` call (so modules' own loading, e.g. int8 repacking, still runs),
    each layer read through its own mapping of the file: loading holds the model plus one layer. Reading the
    whole file at once held every weight twice (SmolLM2-135M: 1.5 GB peak for 0.54 GB of weights; mapped
    file pages count as resident too). A NaN or infinite tensor is refused by name."""
    bad: list[str] = []
    try:
        with safe_open(str(weights), framework="pt") as handle:
            names = sorted(handle.keys())
        # grouped by the module path's first three parts: a layer per call, a module's tensors always together
        for _, group in groupby(names, key=lambda name: name.rsplit(".", 1)[0].split(".")[:3]):
            with safe_open(str(weights), framework="pt") as handle:  # closed: its pages leave the process
                tensors = {name: handle.get_tensor(name) for name in group}
            bad += [n for n, t in tensors.items() if t.is_floating_point() and not all_finite(t)]
            model.load_state_dict(tensors, strict=False)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights}: corrupt or truncated safetensors file ({exc})") from None
    refuse_non_finite(bad, weights)


def load_meta(path: str | Path) -> dict[str, Any]:
    """``meta.json`` of a checkpoint (``{}`` when absent); anything but a JSON object is a CheckpointError."""
    meta_file = Path(path) / META
    if not meta_file.exists():
        return {}
    return structured.read(meta_file, mapping=True, error=CheckpointError)


def check_meta(meta: dict[str, Any], config: ModelConfig, where: Path) -> None:
    """The keys of ``meta.json`` that loading relies on: a classifier's class names and truncation length."""
    labels, max_len = meta.get("labels"), meta.get("max_len")
    if labels is not None and (not isinstance(labels, list) or len(labels) != config.num_classes
                               or not all(isinstance(name, str) for name in labels)):
        raise CheckpointError(f"{where}: 'labels' must be a list of {config.num_classes} class names "
                              f"(model.num_classes), got {brief(labels)}")
    if max_len is not None and (isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1):
        raise CheckpointError(f"{where}: 'max_len' must be a positive integer, got {brief(max_len)}")


# ----------------------------------------------------------------------------- integrity checks (before building)

_NOT_ARCHITECTURE = {"dropout", "weight_dropout"}  # training-only knobs: editing them changes no result


def architecture_metadata(config: ModelConfig) -> dict[str, str]:
    """The architecture as stored beside the weights: its non-default keys (JSON) and their sha256.

    Only keys that differ from the defaults are kept, so a new ModelConfig field (defaulting to the
    old behaviour) leaves old fingerprints valid.
    """
    text = json.dumps(_architecture(config), sort_keys=True, separators=(",", ":"))
    return {ARCHITECTURE: text, FINGERPRINT: hashlib.sha256(text.encode()).hexdigest()}


def _architecture(config: ModelConfig) -> dict[str, Any]:
    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k not in _NOT_ARCHITECTURE}
        return node

    return strip(config.model_dump(exclude_defaults=True))


def vocabulary_digest(tokenizer: Tokenizer) -> str:
    return hashlib.sha256(json.dumps(sorted(tokenizer.get_vocab(with_added_tokens=True).items())).encode()).hexdigest()


def check_vocabulary(tokenizer: Tokenizer | None, metadata: dict[str, str], path: Path) -> None:
    """``tokenizer.json`` must be the tokenizer the weights were saved with (when they say which): a foreign one
    maps text to other ids, and the output is garbage without an error."""
    if tokenizer is None or VOCABULARY not in metadata or vocabulary_digest(tokenizer) == metadata[VOCABULARY]:
        return
    raise CheckpointError(f"{path / TOKENIZER} is not the tokenizer the weights were saved with (its token -> id "
                          f"table differs, {tokenizer.get_vocab_size()} tokens); restore the checkpoint's own "
                          "tokenizer.json")


def check_architecture(config: ModelConfig, metadata: dict[str, str], path: Path) -> None:
    """``config.json`` must describe the architecture the weights were saved with (when they say which)."""
    if FINGERPRINT not in metadata:  # written before fingerprints existed, or by another tool
        return
    if architecture_metadata(config)[FINGERPRINT] == metadata[FINGERPRINT]:
        return
    try:
        saved = json.loads(metadata.get(ARCHITECTURE, "{}"))
    except json.JSONDecodeError:
        saved = {}
    defaults = structured.flatten(type(config)().model_dump())
    now = defaults | structured.flatten(_architecture(config))
    then = defaults | structured.flatten(saved if isinstance(saved, dict) else {})
    changed = [f"{key}: {brief(then.get(key))} -> {brief(now.get(key))}"
               for key in sorted(set(now) | set(then)) if now.get(key) != then.get(key)]
    raise CheckpointError(f"{path / CONFIG} does not match the architecture its weights were saved with "
                          f"({'; '.join(changed[:4]) or 'fingerprint differs'}); restore config.json, or convert "
                          "the model with a hybridformer command instead of editing config.json")



def weight_specs(path: str | Path) -> tuple[TensorSpecs, dict[str, str]]:
    """Names, dtypes and shapes of ``path/model.safetensors`` and its metadata, read from the header only."""
    weights = Path(path) / WEIGHTS
    if not weights.is_file():
        raise missing_weights(Path(path))
    try:
        with safe_open(str(weights), framework="pt") as handle:
            specs = {name: (handle.get_slice(name).get_dtype(), tuple(handle.get_slice(name).get_shape()))
                     for name in handle.keys()}
            return specs, dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights}: corrupt or truncated safetensors file ({str(exc)[:200]})") from None


def check_weight_specs(config: ModelConfig, specs: TensorSpecs, source: Path) -> None:
    """Every tensor of the file must have the name, shape and kind of dtype the config's model expects.

    Layer counts are compared with the header's layer indices first (no building at all), then the
    model is built on the meta device (shapes only, no memory) and compared tensor by tensor.
    """
    for role in ("encoder", "decoder"):
        found = {int(m.group(1)) for m in (re.match(rf"{role}\.layers\.(\d+)\.", n) for n in specs) if m}
        claimed = getattr(config, role).layers
        if found and claimed != max(found) + 1:
            raise CheckpointError(f"{source}: config.json says {role}.layers={claimed} but the weights hold "
                                  f"{max(found) + 1} {role} layers")
    try:
        with torch.device("meta"), random_init_skipped():
            expected = build_model(config).state_dict(keep_vars=True)
    except (RuntimeError, ValueError, OverflowError, TypeError) as exc:  # e.g. "Storage size calculation overflowed"
        raise CheckpointError(f"{source.parent / CONFIG}: describes a model that cannot be built "
                              f"({str(exc).splitlines()[0][:200]})") from None
    check_fit(expected, {name: (DTYPES.get(dtype), shape) for name, (dtype, shape) in specs.items()}, source)


def check_fit(expected: dict[str, torch.Tensor], found: dict[str, tuple[torch.dtype | None, tuple[int, ...]]],
              source: Path) -> list[list[str]]:
    """Compare a model's state (``keep_vars=True``) with the ``(dtype, shape)`` of stored tensors.

    Returns the groups of tied names (each stored once); a missing, unexpected or misshapen tensor,
    or one whose dtype would be cast to garbage (an int64 weight for a float), is a CheckpointError.
    """
    groups: dict[int, list[str]] = {}
    for name, tensor in expected.items():
        groups.setdefault(id(tensor), []).append(name)
    problems = [f"missing {names[0]}" for names in groups.values() if not any(n in found for n in names)]
    problems += [f"unexpected {n}" for n in sorted(set(found) - set(expected))]
    for name, (dtype, shape) in found.items():
        if name not in expected:
            continue
        want = expected[name]
        if shape != tuple(want.shape):
            problems.append(f"{name}: file {shape} vs model {tuple(want.shape)}")
        elif not _dtype_fits(dtype, want.dtype):
            problems.append(f"{name}: stored as {str(dtype).removeprefix('torch.')}, the model needs "
                            f"{str(want.dtype).removeprefix('torch.')}")
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise CheckpointError(f"{source}: weights do not fit the config: {'; '.join(problems[:5])}{more}")
    return list(groups.values())


def _dtype_fits(stored: torch.dtype | None, wanted: torch.dtype) -> bool:
    """A float may load into another float width; anything else (an int64 weight for a float) must match."""
    if stored is None:
        return False
    return stored == wanted or (stored.is_floating_point and wanted.is_floating_point)


def all_finite(tensor: torch.Tensor) -> bool:
    """Whether no element is NaN or infinite: one sum first (any NaN or inf makes it non-finite), the elementwise
    check only when the sum is not finite (which an overflow alone can cause). A third of the elementwise cost."""
    return bool(torch.isfinite(tensor.sum())) or bool(torch.isfinite(tensor).all())


def refuse_non_finite(bad: list[str], source: Path) -> None:
    """NaN or infinite weights decode to garbage (or nothing) without an error: refuse them by name."""
    if bad:
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise CheckpointError(f"{source}: weights hold NaN or infinite values (in {bad[0]}{more}); the model was "
                              "saved after training diverged: use an earlier checkpoint")


def os_error(exc: BaseException) -> OSError | None:
    """The operating-system error behind ``exc``: torch.save and safetensors report a full disk or a file
    size limit as RuntimeError / SafetensorError, with the OSError as context or as "os error N" text."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno:
            return seen
        seen = seen.__cause__ or seen.__context__
    found = re.search(r"os error (\d+)", str(exc))
    return OSError(int(found.group(1)), os.strerror(int(found.group(1)))) if found else None


def write_checkpoint_dir(path: str | Path, fill: Callable[[Path], None]) -> Path:
    """Atomically create the directory ``path`` from ``fill(tmp_dir)``: :func:`save_checkpoint` and the
    writers that have no ``nn.Module`` (averaging and merging stream raw tensors) share it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        fill(tmp)
        _normal_modes(tmp)
        _fsync_tree(tmp)
        _replace_dir(tmp, path)
    except (OSError, RuntimeError, SafetensorError) as exc:
        error = os_error(exc)
        if error is None:
            raise
        raise OSError(error.errno, error.strerror, str(path)) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path
