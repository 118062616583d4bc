"""Dynamic int8 quantization of linear layers for CPU inference (PyTorch's own ``quantize_dynamic``).

Weights are quantized once, per output channel, to int8; activations are quantized on the fly
per call (Jacob et al., 2018, as implemented by FBGEMM/QNNPACK), so no calibration data is
needed. Embeddings, norms and attention's softmax stay in float.

Saving: PyTorch keeps a quantized linear's weights in an opaque "packed" object that
safetensors cannot hold. :class:`Int8Linear` therefore stores exactly what the packed object is
built from — the int8 weight, its per-channel scales and zero points, and the float bias — as
ordinary buffers, and re-packs them after loading. Linear weights take a quarter of their fp32
bytes, but embeddings, norms and biases stay float: the whole checkpoint of the multi30k-transformer
recipe's model shrinks 1.86x (docs/RESULTS.md, "Compression"). Nothing is unpickled, and a loaded
model computes bit-for-bit what the saved one did.
``ModelConfig.quantization = "dynamic_int8"`` tells :func:`~hybridformer.build_model` (and so
``load_checkpoint``) to build the quantized structure before the weights are loaded, which is why
this module lives beside ``ffn.py``, below ``models``; ``hybridformer.compress`` decides *when* to quantize.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn

from .errors import ConfigError


class Int8Linear(nn.Module):
    """``y = x Wᵀ + b`` with W int8 (per-output-channel affine) and x quantized dynamically per call.

    The computation is PyTorch's ``quantized::linear_dynamic`` (what ``quantize_dynamic``'s
    ``DynamicQuantizedLinear`` runs); the buffers exist so the layer fits in a safetensors file.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("weight_int8", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(out_features, dtype=torch.float64))
        self.register_buffer("weight_zero_point", torch.zeros(out_features, dtype=torch.int64))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)
        self._packed = None
        self.register_load_state_dict_post_hook(lambda module, _: module.repack())

    @classmethod
    @torch.no_grad()
    def from_dynamic(cls, qlinear: nn.Module) -> Int8Linear:
        """Take over a ``DynamicQuantizedLinear`` made by ``torch.ao.quantization.quantize_dynamic``."""
        weight, bias = qlinear._packed_params._weight_bias()
        layer = cls(qlinear.in_features, qlinear.out_features, bias=bias is not None)
        layer.weight_int8.copy_(weight.int_repr())
        layer.weight_scale.copy_(weight.q_per_channel_scales())
        layer.weight_zero_point.copy_(weight.q_per_channel_zero_points())
        if bias is not None:
            layer.bias.copy_(bias)
        layer._packed = qlinear._packed_params._packed_params
        return layer

    def repack(self) -> None:
        """Rebuild the packed weight from the buffers (after loading a state dict)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # quantized-tensor creation is deprecated in favour of torchao
            weight = torch._make_per_channel_quantized_tensor(
                self.weight_int8, self.weight_scale, self.weight_zero_point, 0)
        self._packed = torch.ops.quantized.linear_prepack(weight, self.bias)

    def forward(self, x: Tensor) -> Tensor:
        if self._packed is None:
            self.repack()
        # reduce_range=True: what DynamicQuantizedLinear passes for qint8 (avoids int16 overflow in FBGEMM)
        return torch.ops.quantized.linear_dynamic(x.float(), self._packed, True).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, dtype=qint8, per_channel"


def quantize_dynamic_int8(model: nn.Module) -> nn.Module:
    """Quantize every ``nn.Linear`` of ``model`` in place to :class:`Int8Linear` (CPU only) and return it."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    devices = {p.device.type for p in model.parameters()}
    if devices == {"meta"}:  # shapes only (a checkpoint's header is checked before anything is built)
        _swap_linears(model, lambda linear: Int8Linear(linear.in_features, linear.out_features,
                                                       bias=linear.bias is not None))
        return model
    if devices - {"cpu"}:
        raise ConfigError("int8 dynamic quantization runs on CPU; move the model to CPU first")
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization deprecation notices
        quantize_dynamic(model, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)
    from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

    _swap_linears(model, Int8Linear.from_dynamic, DynamicQuantizedLinear)
    return model


def _swap_linears(module: nn.Module, make: Callable[[nn.Module], Int8Linear], kind: type = nn.Linear) -> None:
    for name, child in module.named_children():
        if isinstance(child, kind):
            setattr(module, name, make(child))
        else:
            _swap_linears(child, make, kind)
