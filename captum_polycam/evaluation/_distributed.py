"""Sharding a run over ``torchrun`` processes: which batches are this process's, and waiting."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["Ranks", "start", "stop"]

# Ranks wait for each other only at the end, after a possibly long share of the work; the
# default timeout (30 minutes for gloo) would fail a run whose shares are uneven.
_TIMEOUT = datetime.timedelta(days=7)


@dataclass(frozen=True)
class Ranks:
    """This process's place among the run's processes; ``world == 1`` without torchrun."""

    rank: int = 0
    world: int = 1
    owns_group: bool = False  # this run started the process group, so it ends it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def start(device: torch.device) -> tuple[Ranks, torch.device]:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE`` > 1), with NCCL on GPUs
    and gloo on the CPU; each GPU process takes the GPU of its ``LOCAL_RANK``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1 or not dist.is_available():
        return Ranks(), device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    owns = not dist.is_initialized()
    if owns:
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=_TIMEOUT)
    return Ranks(dist.get_rank(), dist.get_world_size(), owns), device


def stop(ranks: Ranks) -> None:
    if ranks.owns_group:
        dist.destroy_process_group()
