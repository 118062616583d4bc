"""Long context for a trained model: swap its self-attention for a long-text mechanism, keep every weight.

The LED / Longformer recipe (Beltagy et al., 2020): the trained weights stay; the self-attention of
chosen layers becomes windowed (or block-sparse, chunked exact, ...); a learned position table is
extended by tiling its trained rows (positions ``n .. 2n-1`` reuse rows ``0 .. n-1``, the rows
before ``position_offset`` kept in front); RoPE keeps its base or takes a scaling (Chen et al.,
2023; bloc97, 2023; Peng et al., 2023); sinusoidal, ALiBi and T5 positions need nothing. The
result is an ordinary checkpoint whose ``config.json`` holds the new architecture and whose
``meta.json`` records what was changed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from . import structured
from .attention import ATTENTION, AttentionKernel, kernel_options
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .config import AttentionConfig, ModelConfig, RopeScaling, StackConfig, parse_config
from .errors import ConfigError
from .models import build_model
from .outputs import prepare_output_dir
from .position import LearnedPositions

__all__ = ["decoding_memory", "longify", "longify_checkpoint", "longify_config", "parse_attention_spec",
           "parse_layers", "parse_pattern", "parse_rope_scaling", "tile_positions", "LongifyPlan"]

ROPE_SCALINGS = ("linear", "dynamic", "ntk", "yarn")
NO_SELF_ATTENTION = ("lightconv", "dynamicconv", "shortconv", "mamba2")  # token mixer: a convolution or an SSM


@dataclass(frozen=True)
class LongifyPlan:
    """What to change: the new self-attention, where, and the position treatment."""

    attention: AttentionConfig
    layers: str = "all"  # all | 0,2,4 | every:N
    stack: str | None = None  # encoder | decoder | both; None = the model's long-input stack (see default_stacks)
    max_positions: int | None = None
    rope_scaling: str | None = None  # none | linear:F | ntk:F | yarn:F | dynamic:F
    global_tokens: int = 0
    pattern: str | None = None  # local/global layer pattern, repeated over the stack: local,local,global | every:N
    retrieval_heads: int = 0  # keep full caches for this many kv heads, scored on pass-key prompts (decoder LMs)


# ----------------------------------------------------------------------------- parsing user input


def parse_attention_spec(text: str | AttentionConfig | dict[str, Any]) -> AttentionConfig:
    """``NAME[:key=value,...]`` (:func:`~hybridformer.structured.parse_spec`) -> a validated AttentionConfig."""
    if isinstance(text, AttentionConfig):
        return text
    if isinstance(text, dict):
        return parse_config(AttentionConfig, text, prefix="--attention")
    name, options = structured.parse_spec(text, where="--attention", error=ConfigError)
    return parse_config(AttentionConfig, {"name": name, **options}, prefix="--attention")


def parse_layers(spec: str, num_layers: int, *, where: str) -> list[int]:
    """``all`` | ``0,2,4`` | ``every:N`` (layers 0, N, 2N, ...) -> sorted layer indices of one stack."""
    spec = spec.strip()
    if spec == "all":
        return list(range(num_layers))
    if spec.startswith("every:"):
        step = _int(spec.removeprefix("every:"), f"--layers {spec!r}: every:N needs a positive integer N")
        if step < 1:
            raise ConfigError(f"--layers {spec!r}: every:N needs N >= 1")
        return list(range(0, num_layers, step))
    indices = sorted({_int(p, f"--layers {spec!r}: expected all, every:N or indices such as 0,2,4")
                      for p in spec.split(",") if p.strip()})
    if not indices:
        raise ConfigError(f"--layers {spec!r}: no layer index given")
    bad = [i for i in indices if not 0 <= i < num_layers]
    if bad:
        raise ConfigError(f"--layers: layer {bad[0]} does not exist in the {where} (layers 0..{num_layers - 1})")
    return indices


def parse_pattern(spec: str, num_layers: int, *, where: str) -> list[int]:
    """The global layers of a local/global pattern: ``every:N`` (layers N-1, 2N-1, ...: Gemma 3's five
    local then one global is ``every:6``) or a list of ``local``/``global`` (``l``/``g``) repeated over
    the stack, e.g. ``local,local,global`` -> 2, 5, 8, ..."""
    spec = spec.strip()
    if spec.startswith("every:"):
        step = _int(spec.removeprefix("every:"), f"--global-every {spec.removeprefix('every:')!r}: not an integer")
        if step < 1:
            raise ConfigError(f"--global-every needs N >= 1, got {step}")
        kinds = ["local"] * (step - 1) + ["global"]
    else:
        names = {"l": "local", "local": "local", "g": "global", "global": "global"}
        items = [p.strip().lower() for p in spec.split(",") if p.strip()]
        if not items or any(item not in names for item in items):
            raise ConfigError(f"--layer-attention {spec!r}: expected a comma-separated pattern of local and "
                              "global (or l and g), e.g. local,local,local,local,local,global")
        kinds = [names[item] for item in items]
    if not spec.startswith("every:") and len(kinds) > num_layers:
        raise ConfigError(f"--layer-attention lists {len(kinds)} layers but the {where} has {num_layers}")
    chosen = [i for i in range(num_layers) if kinds[i % len(kinds)] == "global"]
    if not chosen:
        raise ConfigError(f"the layer pattern {spec!r} leaves no global layer in the {num_layers}-layer {where}; "
                          "use a smaller --global-every, or plain --attention for windows everywhere")
    return chosen


def parse_rope_scaling(spec: str | None, cfg: ModelConfig) -> dict[str, Any] | None:
    """``none`` | ``TYPE:FACTOR`` -> a ``rope_scaling`` dict for ``cfg`` (None: keep the model's RoPE)."""
    if spec is None or spec.strip() == "none":
        return None
    kind, _, factor_text = spec.strip().partition(":")
    if kind not in ROPE_SCALINGS or not factor_text:
        raise ConfigError(f"--rope-scaling {spec!r}: expected none or TYPE:FACTOR with TYPE one of "
                          f"{', '.join(ROPE_SCALINGS)} (e.g. linear:4)")
    try:
        factor = float(factor_text)
    except ValueError:
        raise ConfigError(f"--rope-scaling {spec!r}: factor {factor_text!r} is not a number") from None
    if factor < 1.0:
        raise ConfigError(f"--rope-scaling {spec!r}: factor must be >= 1 (it stretches the trained positions)")
    if cfg.position != "rope":
        raise ConfigError(f"--rope-scaling applies to RoPE models; this model uses position={cfg.position!r} "
                          "(learned tables are tiled by --max-positions; sinusoidal, alibi and t5 need nothing)")
    return {"type": kind, "factor": factor, "original_max_positions": cfg.max_positions}


def _int(text: str, message: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ConfigError(message) from None


# ----------------------------------------------------------------------------- the config change


def default_stacks(cfg: ModelConfig) -> list[str]:
    """Where long input goes: an LM's decoder, a classifier's encoder, a seq2seq model's encoder (LED)."""
    return ["decoder"] if cfg.arch == "decoder_lm" else ["encoder"]


def model_stacks(cfg: ModelConfig) -> list[str]:
    return {"decoder_lm": ["decoder"], "encoder_classifier": ["encoder"]}.get(cfg.arch, ["encoder", "decoder"])


def longify_config(cfg: ModelConfig, plan: LongifyPlan, full_heads: dict[int, list[int]] | None = None,
                   ) -> tuple[ModelConfig, dict[str, Any]]:
    """The longified ModelConfig and the record of what changed (for ``meta.json``). ``full_heads``
    (``{layer: [kv heads]}``, :func:`hybridformer.retrieval.top_heads`) keeps those heads' full attention in a
    decoder's layers (``retrieval_heads``) and gives the others the window."""
    attention = _with_globals(plan.attention, plan.global_tokens)
    stacks = _chosen_stacks(cfg, plan.stack)
    if full_heads is not None:  # (longify_checkpoint checks before scoring; a caller may pass heads directly)
        _check_retrieval_plan(cfg, plan)
    update: dict[str, Any] = {}
    changed_layers: dict[str, list[int]] = {}
    _check_sink_positions(cfg, attention, stacks)
    if plan.pattern is not None and plan.layers != "all":
        raise ConfigError("give the windowed layers either by --layers or by a layer pattern (--global-every, "
                          "--layer-attention), not both")
    scaling = parse_rope_scaling(plan.rope_scaling, cfg)
    global_layers: dict[str, list[int]] = {}
    for role in stacks:
        stack: StackConfig = getattr(cfg, role)
        attending = [i for i in range(stack.layers) if stack.layer_of(i) not in NO_SELF_ATTENTION]
        if not attending:
            raise ConfigError(f"the {role} stack has layer={stack.layer!r}, which has no self-attention to replace "
                              "(its convolution or state-space scan already costs O(L))")
        if plan.pattern is None:
            chosen = parse_layers(plan.layers, stack.layers, where=f"{role} stack")
        else:
            global_layers[role] = parse_pattern(plan.pattern, stack.layers, where=f"{role} stack")
            chosen = [i for i in range(stack.layers) if i not in global_layers[role]]
        # in a conv/SSM–attention hybrid only the attention layers change; the others need nothing
        layers = [i for i in chosen if i in attending]
        if not layers:
            raise ConfigError(f"--layers {plan.layers!r}: none of the chosen {role} layers has self-attention "
                              f"(those that do: {', '.join(map(str, attending))})")
        carried = _carry_dropout(stack, attention)
        new = {i: _keep_rope_base(_retrieving(carried, (full_heads or {}).get(i)), stack.attention_of(i))
               for i in layers}
        if layers == list(range(stack.layers)):
            default = _keep_rope_base(carried, stack.attention)
            overrides = {i: a for i, a in new.items() if a != default}  # layers rotating with their own base
            update[role] = stack.model_copy(update={"attention": default, "layer_attention": overrides})
        else:
            update[role] = stack.model_copy(update={"layer_attention": {**stack.layer_attention, **new}})
        # only the global layers (or those with retrieval heads) read past the trained length
        far = global_layers.get(role) or (sorted(full_heads) if full_heads else [])
        if far and scaling is not None:
            rotations = {**stack.layer_rope_scaling, **dict.fromkeys(far, RopeScaling(**scaling))}
            update[role] = update[role].model_copy(update={"layer_rope_scaling": rotations})
        changed_layers[role] = layers
    old_max = cfg.max_positions
    if plan.max_positions is not None:
        if plan.max_positions < old_max:
            raise ConfigError(f"--max-positions {plan.max_positions} is below the model's current "
                              f"max_positions={old_max}; longify only extends")
        _check_position_limit(cfg, plan.max_positions)
        update["max_positions"] = plan.max_positions
    positions = max(plan.max_positions or 0, old_max)
    if plan.global_tokens > positions:
        raise ConfigError(f"--global-tokens {plan.global_tokens:,} exceeds the model's {positions:,} positions; "
                          "global tokens are a few leading tokens (e.g. 1 to 64)")
    if scaling is not None and not global_layers and not full_heads:
        update["rope_scaling"] = scaling
    data = cfg.model_dump()
    data.update({k: v.model_dump() if isinstance(v, StackConfig) else v for k, v in update.items()})
    new_cfg = parse_config(ModelConfig, data, prefix="model")
    record = {
        "attention": {"name": attention.name, **attention.options}, "stacks": changed_layers,
        "max_positions": [old_max, new_cfg.max_positions], "position": cfg.position,
        "rope_scaling": scaling, "global_tokens": plan.global_tokens,
    }
    if global_layers:
        record["global_layers"] = global_layers
    memory = decoding_memory(new_cfg, new_cfg.max_positions)
    if memory is not None:
        record["decoding_memory"] = memory | {"original_kv_mib": decoding_memory(cfg, new_cfg.max_positions)["kv_mib"]}
    return new_cfg, record


MAX_POSITIONS = 2**24  # float32 represents every integer position up to here; beyond, positions collide


def _check_position_limit(cfg: ModelConfig, max_positions: int) -> None:
    """Refuse a position limit no machine can serve, before anything is built: positions past 2**24 are not
    distinct in float32 (sinusoidal, RoPE and ALiBi compute with them), and a learned table must fit in memory."""
    if max_positions > MAX_POSITIONS:
        raise ConfigError(f"--max-positions {max_positions:,} is beyond {MAX_POSITIONS:,}, the last position float32 "
                          "tells apart; longify to at most that")
    if cfg.position == "learned":
        table = max_positions * cfg.d_model * 4
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        if table > memory:
            raise ConfigError(f"--max-positions {max_positions:,}: the learned position table would take "
                              f"{table / 2**30:,.1f} GiB, more than this machine's {memory / 2**30:,.1f} GiB")


def decoding_memory(cfg: ModelConfig, length: int, bytes_per_value: int = 4) -> dict[str, Any] | None:
    """The self-attention caches of a decoder at ``length`` tokens of context (float32 by default):
    a ``sliding_window`` layer keeps ``num_global + keep + window`` keys and values, a linear-attention layer
    a fixed state (not counted here), as do convolution and state-space layers; any other layer all
    ``length``. None for a model without a decoder."""
    if cfg.arch == "encoder_classifier":
        return None
    per_token = 2 * cfg.num_kv_heads * cfg.attention_head_dim * bytes_per_value  # keys and values, one layer
    tokens = []
    for index in range(cfg.decoder.layers):
        attention = cfg.decoder.attention_of(index)
        if cfg.decoder.layer_of(index) in NO_SELF_ATTENTION:
            tokens.append(0)
        elif attention.name in ("sliding_window", "window_linear"):  # + window_linear's fixed linear state
            kernel = ATTENTION[attention.name](**attention.options)
            tokens.append(min(length, kernel.window + getattr(kernel, "num_global", 0) + getattr(kernel, "keep", 0)))
        elif attention.name == "retrieval_heads":  # full kv heads and windowed ones: their mean per layer
            kernel = ATTENTION[attention.name](**attention.options)
            full = len(kernel.full_heads) / cfg.num_kv_heads
            windowed = min(length, kernel.local.window + kernel.local.num_global)
            tokens.append(round(full * length + (1 - full) * windowed))
        else:
            tokens.append(0 if attention.name in ("linear", "performer") else length)
    return {"length": length, "kv_tokens_per_layer": tokens, "kv_mib": round(sum(tokens) * per_token / 2**20, 2)}


def _check_retrieval_plan(cfg: ModelConfig, plan: LongifyPlan) -> None:
    """Retrieval heads split a decoder LM's layers between full heads and ``sliding_window`` streaming heads."""
    attention = _with_globals(plan.attention, plan.global_tokens)
    if cfg.arch != "decoder_lm" or _chosen_stacks(cfg, plan.stack) != ["decoder"]:
        raise ConfigError("--retrieval-heads is for decoder LMs (their decoder stack)")
    if attention.name != "sliding_window" or {"keep", "observe"} & set(attention.options):
        raise ConfigError("--retrieval-heads gives the other heads a window: use --attention sliding_window:window=N "
                          "(with sink_positions; without keep)")
    if plan.layers != "all" or plan.pattern is not None:
        raise ConfigError("--retrieval-heads chooses heads in every layer; drop --layers, --global-every and "
                          "--layer-attention")


def _retrieving(attention: AttentionConfig, heads: list[int] | None) -> AttentionConfig:
    """A layer with retrieval heads: those kv heads attend everything, the others keep ``attention``'s window."""
    if not heads:
        return attention
    window = {k: v for k, v in attention.options.items() if k in ("window", "num_global", "sink_positions",
                                                                   "chunk_size")}
    return AttentionConfig(name="retrieval_heads", full_heads=heads, **window)


def _chosen_stacks(cfg: ModelConfig, stack: str | None) -> list[str]:
    if stack is None:
        return default_stacks(cfg)
    if stack not in ("encoder", "decoder", "both"):
        raise ConfigError(f"--stack {stack!r}: expected encoder, decoder or both")
    wanted = ["encoder", "decoder"] if stack == "both" else [stack]
    present = model_stacks(cfg)
    missing = [s for s in wanted if s not in present]
    if missing:
        raise ConfigError(f"--stack {stack}: a {cfg.arch} model has no {missing[0]} stack "
                          f"(it has: {', '.join(present)})")
    return wanted


def _with_globals(attention: AttentionConfig, global_tokens: int) -> AttentionConfig:
    """``--global-tokens K``: the first K tokens attend and are attended everywhere (``num_global``)."""
    if global_tokens < 0:
        raise ConfigError(f"--global-tokens must be >= 0, got {global_tokens}")
    if not global_tokens:
        return attention
    options = attention.options
    if "num_global" not in _allowed_options(attention.name):
        raise ConfigError(f"--global-tokens: attention {attention.name!r} has no global tokens; use sliding_window "
                          "(block_sparse marks global blocks: block_sparse:global_blocks=N)")
    if options.get("num_global", global_tokens) != global_tokens:
        raise ConfigError(f"--global-tokens {global_tokens} contradicts num_global={options['num_global']} "
                          "in --attention; give one of them")
    return AttentionConfig(name=attention.name, **{**options, "num_global": global_tokens})


def _check_sink_positions(cfg: ModelConfig, attention: AttentionConfig, stacks: list[str]) -> None:
    """``sink_positions=cache`` (StreamingLLM) moves the sinks' relative positions: it needs a causal
    stack and positions that enter the scores (RoPE, ALiBi, T5)."""
    if attention.options.get("sink_positions") != "cache":
        return
    if "encoder" in stacks:
        raise ConfigError("sink_positions=cache (StreamingLLM) is for causal decoders; an encoder's global "
                          "tokens keep their absolute positions (drop sink_positions or use --stack decoder)")
    if cfg.position not in ("rope", "alibi", "t5"):
        raise ConfigError(f"sink_positions=cache changes nothing with position={cfg.position!r} (positions are "
                          "added to the embeddings); it applies to rope, alibi and t5 models")


def _carry_dropout(stack: StackConfig, attention: AttentionConfig) -> AttentionConfig:
    """Keep the stack's attention dropout when the new mechanism takes one and the spec does not set it."""
    old = stack.attention.options.get("dropout")
    if old is None or "dropout" in attention.options or "dropout" not in _allowed_options(attention.name):
        return attention
    return AttentionConfig(name=attention.name, **{**attention.options, "dropout": old})


def _keep_rope_base(attention: AttentionConfig, old: AttentionConfig) -> AttentionConfig:
    """A layer keeps its own RoPE base (Gemma 3's local layers) whatever kernel it gets."""
    return attention if old.rope_base is None else attention.model_copy(update={"rope_base": old.rope_base})


def _allowed_options(name: str) -> list[str]:
    return kernel_options(ATTENTION[name])


# ----------------------------------------------------------------------------- the weights


def tile_positions(table: Tensor, rows: int, offset: int = 0) -> Tensor:
    """A learned position table grown to ``rows`` rows (LED): the first ``offset`` rows (BART's 2,
    RoBERTa's pad + 1) stay in front, then the trained rows ``offset..`` repeat until the table is full,
    so position ``p`` takes the trained row of position ``p mod n``."""
    trained = table[offset:]
    if len(trained) == 0:
        raise ConfigError(f"the position table has {len(table)} rows, none after position_offset={offset}")
    repeats = -(-(rows - offset) // len(trained))
    return torch.cat([table[:offset], trained.repeat(repeats, 1)[: rows - offset]])


def _transfer(old: nn.Module, new: nn.Module, offset: int) -> None:
    """Copy every weight of ``old`` into ``new``; learned position tables are tiled to their new length, and a
    new kernel's own parameters (window_linear's feature maps) keep their initialisation."""
    state = dict(old.state_dict())
    for name, module in new.named_modules():
        if isinstance(module, AttentionKernel):
            own = {f"{name}.{key}": value for key, value in module.state_dict().items()}
            state.update({key: value for key, value in own.items() if key not in state})
    for name, module in new.named_modules():
        if isinstance(module, LearnedPositions):
            key = f"{name}.table.weight" if name else "table.weight"
            state[key] = tile_positions(state[key], module.table.num_embeddings, offset)
    new.load_state_dict(state, strict=True)


def longify_checkpoint(checkpoint: Checkpoint, plan: LongifyPlan) -> tuple[nn.Module, ModelConfig, dict[str, Any]]:
    """In memory: the longified model (eval mode), its config, and the change record."""
    full_heads = scores = None
    if plan.retrieval_heads:
        from .retrieval import retrieval_scores, top_heads

        _check_retrieval_plan(checkpoint.config, plan)  # a plan that cannot work is refused before scoring
        scores = retrieval_scores(checkpoint)
        full_heads = top_heads(scores, plan.retrieval_heads)
    new_cfg, record = longify_config(checkpoint.config, plan, full_heads)
    if scores is not None:
        record["retrieval_heads"] = {"count": plan.retrieval_heads, "full_heads": full_heads,
                                     "scores": [[round(x, 4) for x in row] for row in scores.tolist()]}
    model = build_model(new_cfg)
    _transfer(checkpoint.model, model, getattr(new_cfg, "position_offset", 0))
    return model.eval(), new_cfg, record


def longify(
    ckpt: str | Path, out: str | Path, *, attention: str | AttentionConfig | dict[str, Any], layers: str = "all",
    stack: str | None = None, max_positions: int | None = None, rope_scaling: str | None = None,
    global_tokens: int = 0, pattern: str | None = None, retrieval_heads: int = 0, overwrite: bool = False,
) -> Path:
    """Write a longified copy of checkpoint ``ckpt`` to ``out`` (see module docstring); returns ``out``.

    ``pattern`` (:func:`parse_pattern`: ``every:6`` or ``local,...,global``) keeps the global layers'
    attention and windows the others; ``rope_scaling`` then goes to the global layers only. ``retrieval_heads``
    N keeps full attention in the N kv heads that score best on pass-key prompts (:mod:`hybridformer.retrieval`)
    and gives every other head the window (a decoder LM; ``attention`` a ``sliding_window``)."""
    out = prepare_output_dir(out, overwrite=overwrite, inputs=[ckpt])
    plan = LongifyPlan(parse_attention_spec(attention), layers, stack, max_positions, rope_scaling, global_tokens,
                       pattern, retrieval_heads)
    checkpoint = load_checkpoint(ckpt)
    model, new_cfg, record = longify_checkpoint(checkpoint, plan)
    record["source"] = str(Path(ckpt))
    meta = dict(checkpoint.meta)
    usable = new_cfg.max_positions - getattr(new_cfg, "position_offset", 0)
    if "max_len" in meta and usable > meta["max_len"] and new_cfg.max_positions > checkpoint.config.max_positions:
        record["max_len"] = [meta["max_len"], usable]  # a classifier now reads documents up to its new length
        meta["max_len"] = usable
    meta["longify"] = [*_as_list(meta.get("longify")), record]
    return save_checkpoint(out, model, new_cfg, checkpoint.side_files, meta=meta)


def _as_list(value: Any) -> Iterable[Any]:
    return [] if value is None else value if isinstance(value, list) else [value]

