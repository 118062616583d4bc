"""Data parallelism over ``torch.distributed``: DDP, or FSDP2 (``fully_shard``) for large models.

Launch with ``torchrun --nproc-per-node N hybridformer train ...``; torchrun sets RANK,
WORLD_SIZE and LOCAL_RANK, which is all this module reads. gloo serves CPUs, nccl GPUs. Only
rank 0 writes files; the others take their share of each step's batches (see data.batching).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..blocks import Layer
from ..errors import CheckpointError, ConfigError


@dataclass
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, env: DistEnv) -> torch.device:
    """``auto`` = this process's GPU when there is one, else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and env.active:
        name = f"cuda:{env.local_rank}"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name!r} but no CUDA device is available; use 'cpu' or 'auto'")
    device = torch.device(name)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def init_distributed(device: str = "auto") -> DistEnv:
    """Join the process group when launched by torchrun with more than one process."""
    env = DistEnv(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                  int(os.environ.get("LOCAL_RANK", 0)))
    if env.active and not dist.is_initialized():
        use_nccl = device != "cpu" and torch.cuda.is_available()
        if use_nccl:
            torch.cuda.set_device(env.local_rank)
        dist.init_process_group("nccl" if use_nccl else "gloo")
    return env


def shutdown(env: DistEnv) -> None:
    if env.active and dist.is_initialized():
        dist.destroy_process_group()


def barrier(env: DistEnv) -> None:
    if env.active:
        dist.barrier()


def all_reduce_sum(values: Tensor, env: DistEnv) -> Tensor:
    """Sum ``values`` (a float64 vector) over ranks, in place, and return it."""
    if env.active:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def accumulate(sums: dict[str, Tensor], values: dict[str, Tensor]) -> None:
    """Add named scalars (a batch's counts) into running float64 CPU sums."""
    for key, value in values.items():
        sums[key] = sums.get(key, 0.0) + value.detach().double().cpu()


def all_reduce_named(sums: dict[str, Tensor], env: DistEnv) -> dict[str, float]:
    """Named sums added up across ranks (every rank has the same keys)."""
    keys = sorted(sums)
    if not keys:
        return {}
    totals = all_reduce_sum(torch.stack([sums[k] for k in keys]), env)
    return dict(zip(keys, totals.tolist(), strict=True))


def wrap_model(model: nn.Module, env: DistEnv, strategy: str, device: torch.device) -> nn.Module:
    """DDP (replicated weights, averaged gradients) or FSDP2 (weights sharded per layer, then the root)."""
    if not env.active:
        return model
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for module in model.modules():
            if isinstance(module, Layer):
                fully_shard(module)
        fully_shard(model)
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


@contextmanager
def no_sync_unless(model: nn.Module, sync: bool) -> Iterator[None]:
    """Skip the gradient all-reduce on all but the last micro-batch of an accumulated step."""
    if sync:
        yield
        return
    if isinstance(model, nn.parallel.DistributedDataParallel):
        with model.no_sync():
            yield
        return
    if hasattr(model, "set_requires_gradient_sync"):  # FSDP2
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
        return
    with nullcontext():
        yield


def full_tensor(tensor: Tensor) -> Tensor:
    """The whole tensor of a (possibly FSDP-sharded) parameter or state, on every rank."""
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


def full_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """Model weights gathered onto every rank, on CPU (for saving and EMA export)."""
    return {name: full_tensor(t).detach().cpu() for name, t in unwrap(model).state_dict().items()}


def copy_full_into(dst: Tensor, full: Tensor) -> None:
    """Copy a whole tensor into ``dst``, which may be an FSDP shard (DTensor) of it."""
    if hasattr(dst, "device_mesh"):
        from torch.distributed.tensor import distribute_tensor

        full = distribute_tensor(full.to(dst.device), dst.device_mesh, dst.placements)
    dst.copy_(full)


def optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, *, fsdp: bool) -> dict:
    """The optimizer's state to save; under FSDP gathered whole (on the CPU), so any world size resumes it."""
    if not fsdp:
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict, *, fsdp: bool) -> None:
    """:func:`optimizer_state` back into ``optimizer``; a state of another model is a CheckpointError."""
    if fsdp:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))
        return
    try:
        optimizer.load_state_dict(state)
    except (ValueError, KeyError, TypeError, RuntimeError, IndexError) as exc:
        raise CheckpointError(f"trainer_state.pt: optimizer state does not fit this model ({str(exc)[:200]})") from None
