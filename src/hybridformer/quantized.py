"""Weight formats of linear layers for CPU inference: int8 (dynamic or weight-only), int4 (grouped), bf16.

Each format is one ``nn.Module`` that replaces an ``nn.Linear`` and runs an existing PyTorch kernel,
chosen by measurement on CPU (1 thread, SmolLM2-135M's shapes; docs/compression.md):

- ``dynamic_int8`` (:class:`Int8Linear`): int8 weights per output channel, activations quantized per
  call and per row (Jacob et al., 2018), FBGEMM's ``quantized::linear_dynamic``. This is the kernel behind
  the deprecated ``torch.ao`` dynamic quantization, kept because it is the fastest int8 kernel measured
  here (1.3-3x torchao's int8 weight-only ``_weight_int8pack_mm``); the weights are quantized with
  torchao's per-channel helper. On LLMs, whose activations have outlier channels, calibrate first
  (SmoothQuant, ``hybridformer.compress.smooth``).
- ``int8_weight`` (:class:`Int8WeightLinear`): int8 weights with each row's scale chosen by least squared
  error (:func:`int8_per_channel`), bf16 activations that are never quantized, ``_weight_int8pack_mm``
  (torchao's CPU int8 weight-only kernel): accurate without calibration, slower. It is also the frozen base
  of LoRA training (``train.base_precision=int8``): with gradients on, it is differentiable in its input.
- ``int4`` (:class:`Int4Linear`): 4-bit weights in groups of 32 input channels with a scale and a zero
  each, bf16 activations, ``_weight_int4pack_mm_for_cpu`` (what torchao's CPU int4 layout runs).
- ``bf16`` (:class:`BF16Linear`): bf16 weights prepacked for oneDNN, bf16 products, float everywhere else.

Saving: the kernels' packed weights are opaque, so each layer stores what they are packed from as
ordinary tensors (safetensors holds them; nothing is unpickled) and packs again after loading (and after
a copy). ``ModelConfig.quantization`` names the format, and :func:`~hybridformer.build_model` builds the
quantized structure before the weights are loaded, which is why this module lives beside ``ffn.py``,
below ``models``; ``hybridformer.compress`` decides *when* to quantize. Embeddings, norms and attention
stay float.

Compiling: ``torch.compile`` cannot take a packed weight as a graph input, so a compiled step reaches each
packed product through one opaque operator, :func:`packed_linear`, that finds its layer by a key.
"""

from __future__ import annotations

import itertools
import logging
import warnings
import weakref
from collections.abc import Callable
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from .errors import ConfigError


@contextmanager
def quiet_torchao():
    """torchao logs warnings on import about optional CUDA libraries; a CPU user needs none of them."""
    loggers = [logging.getLogger(name) for name in ("torchao", "torch.utils._pytree")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


# Packed layers by key, for the compiled step (:func:`packed_linear`); a layer leaves when it is freed.
_LAYERS: weakref.WeakValueDictionary[int, _PackedLinear] = weakref.WeakValueDictionary()
_KEYS = itertools.count()


# A plain library operator, not ``torch.library.custom_op``: its Python wrapper cost 10 us a call, 5x this one's.
torch.library.define("hybridformer::packed_linear", "(Tensor x, int key) -> Tensor")


@torch.library.impl("hybridformer::packed_linear", "cpu")
def _packed_linear(x: Tensor, key: int) -> Tensor:
    """The packed layer ``key``'s product, as one opaque operation that ``torch.compile`` can trace: the packed
    weights (FBGEMM's, oneDNN's) are objects the compiler cannot take as graph inputs, so the graph holds only the
    layer's key, and everything around the product is fused as usual."""
    return _LAYERS[key].product(x)


@torch.library.register_fake("hybridformer::packed_linear")
def _(x: Tensor, key: int) -> Tensor:
    return x.new_empty(*x.shape[:-1], _LAYERS[key].out_features)


packed_linear = torch.ops.hybridformer.packed_linear.default


class _PackedLinear(nn.Module):
    """A linear layer whose weight lives in buffers and is packed for its kernel after loading."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self._packed = None
        self._register()

    def _register(self) -> None:
        self.key = next(_KEYS)
        _LAYERS[self.key] = self

    @staticmethod
    def fits(linear: nn.Linear) -> bool:
        """Whether the kernel takes this layer's shape (a layer that does not fit stays float)."""
        return True

    def repack(self) -> None:
        raise NotImplementedError

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        """Pack again when this load brought some of the layer's tensors. The checkpoint loader loads one layer
        per call, and a hook that packed on every call packed each layer once per layer of the model (SmolLM2 in
        bf16: 4,114 packs, 5.6 of its 7 CPU-s to load)."""
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if any(name.startswith(prefix) for name in state_dict):
            self.repack()

    def packed(self):
        if self._packed is None:
            self.repack()
        return self._packed

    def product(self, x: Tensor) -> Tensor:
        """The packed kernel's call on ``x``: eager code calls it directly (the operator's dispatch costs
        2 us a call), a compiled step through :func:`packed_linear`."""
        raise NotImplementedError

    def multiply(self, x: Tensor) -> Tensor:
        return packed_linear(x, self.key) if torch.compiler.is_compiling() else self.product(x)

    def __getstate__(self) -> dict:
        """Copies (ensembles, benchmarks) pack again: some packed layouts (oneDNN's) cannot be copied."""
        return {**self.__dict__, "_packed": None}

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._register()  # a copy is a layer of its own


# FBGEMM multiplies uint8 activations by int8 weights. Without VNNI it sums pairs of products in int16, which
# saturates unless activations or weights give up a bit: 8-bit activations with 8-bit weights scored +23%
# perplexity on SmolLM2 (AVX2 EPYC). So a CPU without VNNI quantizes weights to 7 bits, and a layer whose weights
# fit 7 bits takes 8-bit activations on any CPU (+3.5% on 4,096 tokens there, against +9.3% for 7-bit activations,
# what torch.ao always does); 8-bit weights (a VNNI CPU's, or SmoothQuant's) run there with 7-bit activations.
_VNNI = torch.cpu._is_vnni_supported()
_SHARED_SCALE_ROWS = 8  # calls with up to this many rows (decoding steps) quantize them with one scale
_SHARED_SCALE_SPREAD = 2.0  # more rows share one scale while each row's peak is at least 1/2 the largest


class Int8Linear(_PackedLinear):
    """``y = x Wᵀ + b`` with W int8 (per-output-channel, symmetric) and x quantized dynamically per call,
    with one scale per row (token) in prompts and scoring: the kernel takes one scale per call, so the rows
    are first scaled to the same peak and the products scaled back. A prompt's first tokens carry massive
    activations that would flatten every other row. A decoding step's few rows (one new token per sequence)
    share one scale: rescaling them cost 20% of a batch-8 SmolLM2 step. More rows (beam search: 8 sentences ×
    5 beams) share one too while their peaks lie within 2× of each other, so that no row loses more than one
    bit: rescaling was 14% of a beam-5 step of the Conformer recipe, and on SmolLM2's 16-row steps the rule
    agreed with fp32 about as often as one scale per row did (docs/compression.md). A compiled step cannot branch on
    values: there more rows always get their own scales."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__(in_features, out_features)
        self.register_buffer("weight_int8", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(out_features, dtype=torch.float64))
        self.register_buffer("weight_zero_point", torch.zeros(out_features, dtype=torch.int64))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)

    @classmethod
    @torch.no_grad()
    def from_linear(cls, linear: nn.Linear, weight_bits: int | None = None) -> Int8Linear:
        """Each row's scale from its peak: choosing it by least squared error (:func:`int8_per_channel`) measured
        no better here, where the activations' quantization dominates the error (docs/compression.md).
        ``weight_bits`` None: 8 with VNNI, else 7, so that the activations keep 8 (see ``_VNNI``). After SmoothQuant,
        which moves the activations' outliers into the weights, :func:`quantize_model` asks for 8 (SmolLM2 on an AVX2
        CPU, 4,096 tokens: +1.3% perplexity, against +3.8% with 7-bit weights)."""
        bits = weight_bits or (8 if _VNNI else 7)
        layer = _int8_from_linear(cls, linear, clip=False, bits=bits)
        layer.repack()
        return layer

    def repack(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # quantized-tensor creation is deprecated in favour of torchao
            weight = torch._make_per_channel_quantized_tensor(
                self.weight_int8, self.weight_scale, self.weight_zero_point, 0)
        self._packed = torch.ops.quantized.linear_prepack(weight, self.bias)
        seven_bits = bool(self.weight_int8.min() >= -64 and self.weight_int8.max() <= 63)  # (quantized here: ±63)
        self.reduce_range = not (_VNNI or seven_bits)  # 7-bit activations only where int16 sums could saturate

    def product(self, x: Tensor) -> Tensor:
        packed = self.packed()  # packing also sets reduce_range
        return torch.ops.quantized.linear_dynamic(x, packed, self.reduce_range)

    def forward(self, x: Tensor) -> Tensor:
        rows = x.float()
        if rows.numel() <= _SHARED_SCALE_ROWS * self.in_features:
            return self.multiply(rows).to(x.dtype)
        peak = rows.abs().amax(-1, keepdim=True)
        if not torch.compiler.is_compiling():
            low, high = torch.aminmax(peak)
            if float(high) <= _SHARED_SCALE_SPREAD * float(low):
                return self.multiply(rows).to(x.dtype)
        return self.multiply_rows(rows, peak).to(x.dtype)

    def multiply_rows(self, rows: Tensor, peak: Tensor) -> Tensor:
        """The product with one scale per row: each row (peak: its largest magnitude) scaled to 1 first, then back."""
        peak = peak.clamp(min=1e-12)
        out = self.multiply(rows / peak)  # (x / peak) Wᵀ + b
        return out * peak if self.bias is None else (out - self.bias) * peak + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, dtype=qint8, per_channel"


class Int8WeightLinear(nn.Module):
    """``y = x Wᵀ + b`` with W int8 (per-output-channel, symmetric) and x in bf16, never quantized: for
    models whose activations have outliers (LLMs), where per-call activation quantization costs accuracy."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("weight_int8", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(out_features, dtype=torch.bfloat16))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)

    fits = staticmethod(_PackedLinear.fits)

    @classmethod
    @torch.no_grad()
    def from_linear(cls, linear: nn.Linear) -> Int8WeightLinear:
        """Each row's scale by least squared error (:func:`int8_per_channel`): the weights are this format's only
        error."""
        return _int8_from_linear(cls, linear, clip=True)

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled():  # training through a frozen int8 base (LoRA): differentiable in x
            return _Int8WeightMatmul.apply(x, self.weight_int8, self.weight_scale, self.bias)
        rows = x.reshape(-1, self.in_features).to(torch.bfloat16)
        out = torch.ops.aten._weight_int8pack_mm(rows, self.weight_int8, self.weight_scale)
        out = out.to(x.dtype).reshape(*x.shape[:-1], self.out_features)
        return out if self.bias is None else out + self.bias

    def dequantized(self) -> Tensor:
        """``diag(scale) · W_int8`` in bf16: the matrix itself, for the chunked training loss."""
        return self.weight_int8.to(torch.bfloat16) * self.weight_scale[:, None]

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, dtype=int8, weight-only"


class _Int8WeightMatmul(torch.autograd.Function):
    """``x Wᵀ + b`` for a frozen ``W = diag(scale) · W_int8``, differentiable in ``x`` only. Autograd through
    a plain product would keep each layer's dequantised weight until the backward pass (the memory an int8
    base is meant to save); this keeps only the int8 one and dequantises it again. Dequantise-then-multiply
    measured 2.7x faster than ``_weight_int8pack_mm`` at training's row counts (2,048 rows, 1 thread)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight_int8: Tensor, scale: Tensor, bias: Tensor | None) -> Tensor:
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
        ctx.save_for_backward(weight_int8, scale)
        out = (x.to(dtype) @ weight_int8.to(dtype).T) * scale.to(dtype)
        return out if bias is None else out + bias.to(dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:
        weight_int8, scale = ctx.saved_tensors
        return (grad * scale.to(grad.dtype)) @ weight_int8.to(grad.dtype), None, None, None


def _int8_from_linear(cls: type[Int8Linear | Int8WeightLinear], linear: nn.Linear, *, clip: bool, bits: int = 8):
    """``cls`` filled with ``linear``'s weight in int8 (``bits`` of it), symmetric per output channel, and its bias."""
    layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None)
    weight, scale = int8_per_channel(linear.weight, clip=clip, bits=bits)
    layer.weight_int8.copy_(weight)
    layer.weight_scale.copy_(scale)  # the zero points (Int8Linear's buffer) stay 0: symmetric
    if linear.bias is not None:
        layer.bias.copy_(linear.bias)
    return layer


CLIP_RATIOS = tuple(1 - 0.02 * i for i in range(16))  # a row's scale: its peak's, or down to 70% of it


@torch.no_grad()
def int8_per_channel(weight: Tensor, clip: bool = True, bits: int = 8) -> tuple[Tensor, Tensor]:
    """``weight`` (out, in) as int8 values and one symmetric scale per output channel (torchao's helpers);
    ``bits=7`` keeps them in [-63, 63] (see ``_VNNI``) with the peak on ±63 exactly: the observer's scale (peak /
    63.5) rounds a negative peak to -63, half a step off on the outlier weights that matter most (+6.8% perplexity
    on SmolLM2 with 8-bit activations, against +3.5% with the peak kept).

    ``clip=False`` takes each row's peak as its range: the values and scales of PyTorch's per-channel qint8
    observer, exactly. ``clip=True`` gives each row the scale of least squared error among its peak's times
    :data:`CLIP_RATIOS`: the few largest weights of a row are clipped so that its many small ones get finer
    steps (the clip search of llama.cpp's and AWQ's quantizers). On SmolLM2-135M it took int8-weight's
    perplexity on 4,096 tokens of QMSum from +1.1% to +0.6% of fp32 (docs/compression.md)."""
    with quiet_torchao():
        from torchao.quantization.quant_primitives import quantize_affine
        from torchao.quantization.utils import dynamically_quantize_per_channel
    weight = weight.float()
    if bits == 8:
        low, high = -128, 127
        values, scale, zero = dynamically_quantize_per_channel(weight, low, high, torch.int8)
    else:
        high = 2 ** (bits - 1) - 1
        low = -high
        scale = weight.abs().amax(1).clamp(min=torch.finfo(torch.float32).eps) / high
        zero = torch.zeros(len(weight), dtype=torch.int64)
        values = quantize_affine(weight, (1, weight.shape[1]), scale, zero, torch.int8, low, high)
    if not clip:
        return values, scale

    def error(values: Tensor, scale: Tensor) -> Tensor:
        return (values.float() * scale[:, None] - weight).square_().sum(1)

    best = error(values, scale)
    peak_scale = scale
    for ratio in CLIP_RATIOS[1:]:
        trial_scale = peak_scale * ratio
        trial = quantize_affine(weight, (1, weight.shape[1]), trial_scale, zero, torch.int8, low, high)
        trial_error = error(trial, trial_scale)
        better = trial_error < best
        best = torch.where(better, trial_error, best)
        scale = torch.where(better, trial_scale, scale)
        values = torch.where(better[:, None], trial, values)
    return values, scale


class Int4Linear(_PackedLinear):
    """``y = x Wᵀ + b`` with W in 4 bits, each group of ``GROUP`` input channels with its own scale and
    zero (asymmetric, as torchao's int4 weight-only scheme), x multiplied in bf16."""

    GROUP = 32
    attention_dtype = torch.bfloat16  # its products are bf16 already: the attention's too (see BF16Linear)

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__(in_features, out_features)
        # two 4-bit values per byte: column 2j in the low nibble, 2j+1 in the high one
        self.register_buffer("weight_int4", torch.zeros(out_features, in_features // 2, dtype=torch.uint8))
        # (groups, out_features, [scale, zero]): the layout the kernel takes
        self.register_buffer("scales_and_zeros",
                             torch.zeros(in_features // self.GROUP, out_features, 2, dtype=torch.bfloat16))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)

    @staticmethod
    def fits(linear: nn.Linear) -> bool:
        return linear.in_features % Int4Linear.GROUP == 0 and linear.out_features % 16 == 0

    @classmethod
    @torch.no_grad()
    def from_linear(cls, linear: nn.Linear) -> Int4Linear:
        with quiet_torchao():
            from torchao.quantization.utils import groupwise_affine_quantize_tensor
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None)
        values, scales_and_zeros = groupwise_affine_quantize_tensor(linear.weight.float(), 4, cls.GROUP,
                                                                    torch.bfloat16)
        values = values.to(torch.uint8)
        layer.weight_int4.copy_(values[:, 0::2] | (values[:, 1::2] << 4))
        layer.scales_and_zeros.copy_(scales_and_zeros)
        if linear.bias is not None:
            layer.bias.copy_(linear.bias)
        layer.repack()
        return layer

    def repack(self) -> None:
        values = torch.stack([self.weight_int4 & 15, self.weight_int4 >> 4], dim=-1).flatten(1)
        self._packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(values.to(torch.int32), 1)

    def product(self, x: Tensor) -> Tensor:
        return torch.ops.aten._weight_int4pack_mm_for_cpu(x, self.packed(), self.GROUP, self.scales_and_zeros)

    def forward(self, x: Tensor) -> Tensor:
        out = self.multiply(x.reshape(-1, self.in_features).to(torch.bfloat16))
        out = out.to(x.dtype).reshape(*x.shape[:-1], self.out_features)
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, dtype=int4, group={self.GROUP}"


class BF16Linear(_PackedLinear):
    """``y = x Wᵀ + b`` with W stored and multiplied in bf16 (half the bytes of fp32 per step), prepacked into
    oneDNN's blocked layout (what inductor's CPU freezing does): at batch 1 the plain bf16 product streamed
    SmolLM2's vocabulary head at 15 GB/s, the prepacked one at 33 GB/s (1 thread)."""

    # The attention's own products in bf16 too, where a kernel has such a path (the sliding window's bands: 2.4x
    # SDPA's fp32 kernel, whose bf16 one is no faster on CPU; docs/RESULTS.md)
    attention_dtype = torch.bfloat16

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__(in_features, out_features)
        self.register_buffer("weight", torch.zeros(out_features, in_features, dtype=torch.bfloat16))
        self.register_buffer("bias", torch.zeros(out_features, dtype=torch.bfloat16) if bias else None)

    @classmethod
    @torch.no_grad()
    def from_linear(cls, linear: nn.Linear) -> BF16Linear:
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None)
        layer.weight.copy_(linear.weight)
        if linear.bias is not None:
            layer.bias.copy_(linear.bias)
        layer.repack()
        return layer

    def repack(self) -> None:
        """Pack the weight and let the packed copy be the only one (holding both cost SmolLM2 270 MB more than
        its fp32 weights' half); ``state_dict`` unpacks it. A CPU without bf16 units emulates bf16 products at ~1%
        of fp32's rate, and casting the weight to fp32 in every call made a SmolLM2 step 3.3x slower than fp32's
        (AVX2 EPYC, batch 1): there the weight is held once, in fp32 (the bf16 values; fp32's memory and speed),
        transposed: MKL multiplies one row by an (in, out) matrix up to 1.6x faster (the vocabulary head), as
        :func:`~hybridformer.cache.project` does for fp32 layers."""
        self._packed = (torch.ops.mkldnn._reorder_linear_weight(self.weight, 1) if fast_bf16()
                        else self.weight.float().t().contiguous())
        self.weight = None

    def _plain_weight(self) -> Tensor:
        """The bf16 (out, in) weight back from the held copy, exactly."""
        if self._packed.dtype == torch.float32:
            return self._packed.t().to(torch.bfloat16)
        return self._packed.to_dense()

    def _save_to_state_dict(self, destination, prefix, keep_vars) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        if self.weight is None:
            destination[prefix + "weight"] = self._plain_weight()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        if self.weight is None and prefix + "weight" in state_dict:  # held packed: a plain buffer to load into
            self.weight = torch.empty(self.out_features, self.in_features, dtype=torch.bfloat16)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def __getstate__(self) -> dict:
        """A copy gets the plain weight back (and packs it again)."""
        state = super().__getstate__()
        if self.weight is None:
            state["_buffers"] = {**state["_buffers"], "weight": self._plain_weight()}
        return state

    def product(self, x: Tensor) -> Tensor:
        packed = self.packed()
        rows = x.reshape(-1, self.in_features)
        if packed.dtype == torch.float32:  # a CPU without bf16 units (see repack): the bf16 values in fp32, one
            out = rows.float() @ packed  # row as one (MKL's 2-row product took 2-3x as long)
            out = out if self.bias is None else out + self.bias.float()
            return out.to(torch.bfloat16).reshape(*x.shape[:-1], self.out_features)
        if len(rows) == 1:  # oneDNN sums one row in another order than several: a row's result would depend on
            rows = rows.expand(2, -1)  # its batch, so it goes as two (batch invariance; as cheap, measured)
        out = torch.ops.mkldnn._linear_pointwise(rows, packed, self.bias, "none", [], "")
        return out[: x.numel() // self.in_features].reshape(*x.shape[:-1], self.out_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.multiply(x.to(torch.bfloat16)).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, dtype=bfloat16"


def fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (oneDNN's bf16 products: AVX-512 BF16 or AMX). Without it
    PyTorch emulates bf16 GEMMs at ~1% of the fp32 rate (0.9 against 81 GFLOP/s on an AVX2 EPYC, 1 thread)."""
    return torch.ops.mkldnn._is_mkldnn_bf16_supported()


FORMATS: dict[str, type[Int8Linear | Int8WeightLinear | Int4Linear | BF16Linear]] = {
    "dynamic_int8": Int8Linear, "int8_weight": Int8WeightLinear, "int4": Int4Linear, "bf16": BF16Linear}


def quantize_linears(model: nn.Module, fmt: str, **options) -> nn.Module:
    """Replace every ``nn.Linear`` of ``model`` that the format's kernel takes by its ``FORMATS[fmt]`` layer,
    quantized from the float weights (``options``: the layer's ``from_linear`` options), in place (CPU only), and
    return the model."""
    return _format_linears(model, fmt, lambda linear: FORMATS[fmt].from_linear(linear, **options))


def format_structure(model: nn.Module, fmt: str) -> nn.Module:
    """:func:`quantize_linears`'s structure with empty layers, for weights loaded next (``build_model`` replaying a
    checkpoint's format; on the meta device, its header check). Quantizing the random init instead cost every load:
    int8-weight's scale search alone made loading SmolLM2 take 12 CPU-s."""
    layer = FORMATS[fmt]
    return _format_linears(model, fmt, lambda linear: layer(linear.in_features, linear.out_features,
                                                             bias=linear.bias is not None).to(linear.weight.device))


def _format_linears(model: nn.Module, fmt: str, make: Callable[[nn.Linear], nn.Module]) -> nn.Module:
    if {p.device.type for p in model.parameters()} - {"cpu", "meta"}:
        raise ConfigError(f"{fmt} weights run on CPU; load the model on CPU (device='cpu')")
    layer = FORMATS[fmt]
    model.eval()
    _swap_linears(model, make, layer.fits)
    from .attention.base import AttentionKernel  # the attention package imports this module's users

    for module in model.modules():
        if isinstance(module, AttentionKernel):
            module.product_dtype = getattr(layer, "attention_dtype", None) if fast_bf16() else None
    return model


def quantize_dynamic_int8(model: nn.Module) -> nn.Module:
    """Quantize every ``nn.Linear`` of ``model`` in place to :class:`Int8Linear` (CPU only) and return it."""
    return quantize_linears(model, "dynamic_int8")


def _swap_linears(module: nn.Module, make: Callable[[nn.Linear], nn.Module], fits: Callable[[nn.Linear], bool]) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.Linear) and fits(child):
            setattr(module, name, make(child))
        else:
            _swap_linears(child, make, fits)
