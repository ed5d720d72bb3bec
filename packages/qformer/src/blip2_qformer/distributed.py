"""Cross-rank gathers for the ITC and ITM losses and the global token mean of ITG, safe in a single process.

LAVIS calls ``dist.get_rank()`` unconditionally, which crashes a run without a process group; here
one process simply means world size 1.
"""

from __future__ import annotations

import paddle
import paddle.distributed as dist
from paddle.autograd import PyLayer


def rank_and_world_size() -> tuple[int, int]:
    """(rank, world size), (0, 1) when no parallel environment was initialised."""
    if not dist.is_available() or not dist.is_initialized():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def concat_all_gather(tensor: paddle.Tensor) -> paddle.Tensor:
    """Concatenate ``tensor`` from every rank along axis 0, without gradient."""
    _, world = rank_and_world_size()
    if world == 1:
        return tensor.detach()
    with paddle.no_grad():
        parts: list[paddle.Tensor] = []
        dist.all_gather(parts, tensor.detach())
        return paddle.concat(parts, axis=0)


class _GatherWithGrad(PyLayer):
    @staticmethod
    def forward(ctx, tensor: paddle.Tensor) -> paddle.Tensor:
        rank, _ = rank_and_world_size()
        ctx.rank = rank
        ctx.batch = tensor.shape[0]
        parts: list[paddle.Tensor] = []
        dist.all_gather(parts, tensor)
        return paddle.concat(parts, axis=0)

    @staticmethod
    def backward(ctx, grad: paddle.Tensor) -> paddle.Tensor:
        # Every rank used every shard: the gradient of ours is the sum of all ranks' gradients for it.
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.batch : (ctx.rank + 1) * ctx.batch]


def all_gather_with_grad(tensor: paddle.Tensor) -> paddle.Tensor:
    """Concatenate ``tensor`` from every rank along axis 0; gradients flow back to each rank's shard."""
    _, world = rank_and_world_size()
    if world == 1:
        return tensor
    return _GatherWithGrad.apply(tensor)


def global_token_mean(total: paddle.Tensor, count: paddle.Tensor) -> paddle.Tensor:
    """A loss summed over this rank's ``count`` tokens (``total``) as the mean over the tokens of every rank.

    Data parallelism averages the ranks' gradients, so each rank returns ``total * world / (count summed over
    the ranks)``: the mean over ranks of these values, and of their gradients, is the global token mean, however
    the tokens are spread over the ranks (a per-rank mean would weigh a rank's tokens by 1 / its own count). The
    count carries no gradient. One process: ``total / count``. A count below 1 counts as 1 (no tokens: 0).
    """
    _, world = rank_and_world_size()
    if world == 1:
        return total / count.clip(min=1.0)
    with paddle.no_grad():
        count = count.detach().astype(total.dtype).clone()  # all_reduce works in place
        dist.all_reduce(count)
    return total * world / count.clip(min=1.0)
