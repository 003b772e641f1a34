"""Distributed training helpers: one code path for one process or many.

``torchrun`` (``python -m torch.distributed.run``) starts one process per GPU and sets
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous variables;
:func:`init` joins the process group from them (NCCL on GPU, gloo on CPU). Without
those variables everything here is a no-op for a single process, so the training loop
never asks whether it is distributed.

Gradients are averaged with :func:`average_gradients` (one flattened all-reduce)
rather than a ``DistributedDataParallel`` wrapper: progressive growing leaves the
layers of the resolutions not yet trained without gradients, which DDP only tolerates
with its slower unused-parameter search, and the gradient penalties differentiate
through D twice. The weights stay identical across ranks because every rank starts
from rank 0's weights and applies the same averaged gradients.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist

from trainer.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int  # 0 .. world_size - 1 over all machines
    world_size: int  # number of processes
    local_rank: int  # index on this machine (the GPU it uses)
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 alone logs, writes files and shows progress."""
        return self.rank == 0


def env_world_size() -> int:
    """``WORLD_SIZE`` from torchrun's environment, 1 when not under torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def check_device(device: str | None) -> None:
    """Refuse a ``--device`` this machine cannot train on (``None``: CUDA when there is
    one, else the CPU), before a run folder is made."""
    if device is None or device == "cpu":
        return
    if device != "cuda" and not device.startswith("cuda:"):
        raise ConfigError(f"--device {device}: unknown device (cpu or cuda)")
    if not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: this machine has no CUDA GPU")


def init(device: str | None = None) -> DistInfo:
    """Join the process group torchrun describes (if any) and pick this rank's device.

    Args:
        device: ``"cpu"``, ``"cuda"`` or ``None`` (CUDA when available). Under torchrun
            on GPU, each process takes GPU ``LOCAL_RANK``.
    """
    world = env_world_size()
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if use_cuda:
        dev = torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if use_cuda else "gloo",
            rank=rank,
            world_size=world,
            timeout=_dt.timedelta(minutes=30),
        )
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=dev)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if is_distributed():
        dist.barrier()


def cleanup() -> None:
    """Leave the process group (no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def average(
    values: dict[str, float | torch.Tensor], device: torch.device | None = None
) -> dict[str, float]:
    """The mean of each value over all ranks, as plain floats (one all-reduce)."""
    keys = sorted(values)
    if not keys:
        return {}
    flat = torch.stack(
        [torch.as_tensor(values[k], dtype=torch.float64).detach().cpu() for k in keys]
    )
    if is_distributed():
        flat = flat.to(device or _reduce_device())
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat = flat.cpu() / dist.get_world_size()
    return {k: float(v) for k, v in zip(keys, flat, strict=True)}


def average_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """Average ``.grad`` over ranks in place. Every rank must pass the same parameters;
    a parameter without a gradient counts as zeros (and gets none back if no rank had
    one, so the optimizer leaves it alone)."""
    if not is_distributed():
        return
    params = [p for p in params if p.requires_grad]
    if not params:
        return
    has_grad = torch.tensor([p.grad is not None for p in params], dtype=torch.float32)
    has_grad = has_grad.to(params[0].device)
    dist.all_reduce(has_grad, op=dist.ReduceOp.MAX)
    used = [p for p, h in zip(params, has_grad.tolist(), strict=True) if h > 0]
    if not used:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in used]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    offset = 0
    for p in used:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


def average_tensor_(tensor: torch.Tensor) -> torch.Tensor:
    """Replace ``tensor`` by its mean over ranks, in place (no-op in a single process)."""
    if is_distributed():
        dist.all_reduce(tensor.data, op=dist.ReduceOp.SUM)
        tensor.data /= dist.get_world_size()
    return tensor


def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank."""
    if not is_distributed():
        return
    for tensor in [*module.parameters(), *module.buffers()]:
        dist.broadcast(tensor.data, src=src)


def all_equal(module: torch.nn.Module) -> bool:
    """True when every rank holds exactly the same parameters and buffers (a check)."""
    if not is_distributed():
        return True
    local = torch.cat([t.detach().reshape(-1).double() for t in module.state_dict().values()])
    ref = local.clone()
    dist.broadcast(ref, src=0)
    same = torch.tensor([float(torch.equal(local, ref))], device=local.device)
    dist.all_reduce(same, op=dist.ReduceOp.MIN)
    return bool(same.item() == 1.0)


def _reduce_device() -> torch.device:
    # NCCL reduces CUDA tensors only; gloo takes CPU tensors.
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
