"""Gathering SimCLR's projections from every DDP process, with gradients to the local part.

SimCLR (Chen et al., ICML 2020, section 2.2) contrasts each view with every other view of
the *global* batch; under data parallelism every process holds only its share,
so the projections are all-gathered before NT-Xent. ``torch.distributed.all_gather`` does not
propagate gradients; :func:`gather_with_grad` does: the gradient of this process's loss with
respect to every gathered row is summed over the processes and each process keeps its own
rows, so after DDP averages the parameter gradients they equal those of the single-process
loss on the global batch.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from lit_robust.evaluation.base import rank_and_world_size


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0; backward sums the gradients over processes (one all-reduce,
    which every backend has) and returns this process's rows."""

    @staticmethod
    def forward(ctx: Any, tensor: Tensor) -> Tensor:
        rank, world_size = dist.get_rank(), dist.get_world_size()
        parts = [torch.empty_like(tensor) for _ in range(world_size)]
        dist.all_gather(parts, tensor.contiguous())
        ctx.rows = (rank * tensor.shape[0], (rank + 1) * tensor.shape[0])
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad)
        start, stop = ctx.rows
        return grad[start:stop]


def gather_with_grad(tensor: Tensor) -> Tensor:
    """Concatenate ``tensor`` of every process in rank order, (world_size · N, ...).

    Every process must pass the same shape, as Lightning's ``DistributedSampler`` ensures
    (it pads the shards to equal length). Without an initialized process group the tensor is
    returned unchanged.
    """
    if rank_and_world_size()[1] == 1:
        return tensor
    return _GatherWithGrad.apply(tensor)
