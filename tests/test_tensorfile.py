import pytest
import torch
from safetensors import safe_open

from hybridformer.errors import CheckpointError
from hybridformer.tensorfile import DTYPES, write_safetensors


def test_streaming_writer_round_trips_every_dtype(tmp_path):
    tensors = {"b": torch.randn(3, 2).to(torch.bfloat16), "a": torch.randn(5).half(), "c": torch.arange(7),
               "d": torch.tensor([True, False, True]), "e": torch.randn(2, 2, 2, dtype=torch.float64),
               "f": torch.zeros(0, 4), "g": torch.randn(4).to(torch.float8_e4m3fn)}
    names = {dtype: name for name, dtype in DTYPES.items()}
    specs = {name: (names[t.dtype], tuple(t.shape)) for name, t in tensors.items()}
    write_safetensors(tmp_path / "x.safetensors", specs, tensors.__getitem__, {"format": "pt", "note": "kept"})
    with safe_open(str(tmp_path / "x.safetensors"), "pt") as f:
        assert f.metadata() == {"format": "pt", "note": "kept"}
        assert all(torch.equal(f.get_tensor(n).view(torch.uint8), t.view(torch.uint8)) for n, t in tensors.items())


def test_streaming_writer_casts_to_the_spec_and_refuses_a_wrong_shape(tmp_path):
    write_safetensors(tmp_path / "x.safetensors", {"w": ("F32", (2,))}, lambda _: torch.ones(2, dtype=torch.float64))
    with safe_open(str(tmp_path / "x.safetensors"), "pt") as f:
        assert f.get_tensor("w").dtype == torch.float32
    with pytest.raises(CheckpointError, match="tensor w: the source gives shape"):
        write_safetensors(tmp_path / "y.safetensors", {"w": ("F32", (3,))}, lambda _: torch.ones(2))
