"""Run by test_distributed.py under `paddle.distributed.launch --nproc_per_node 2` (gloo, CPU)."""

import json
import sys

import numpy as np
import paddle
import paddle.distributed as dist
from tiny_stage1 import batch, tiny_model

from blip2_qformer import all_gather_with_grad, rank_and_world_size

out_dir = sys.argv[1]
dist.init_parallel_env()
rank, world = rank_and_world_size()

# 1. all_gather_with_grad: each rank's shard gets the gradient every rank's loss sends it.
x = paddle.to_tensor(np.arange(6, dtype="float32").reshape(2, 3) + 10 * rank, stop_gradient=False)
weights = paddle.to_tensor(np.random.RandomState(rank).rand(4, 3).astype("float32"))
gathered = all_gather_with_grad(x)
(gathered * weights).sum().backward()

# 2. stage-1 losses on this rank's half of a batch of 4.
model = tiny_model()
images, ids, mask = batch()
part = slice(2 * rank, 2 * rank + 2)
out = model(paddle.to_tensor(images[part]), paddle.to_tensor(ids[part]), paddle.to_tensor(mask[part]))
out.loss.backward()

# 3. ITG alone: each rank's share of the global token mean, and its gradient (averaged over ranks by the test).
itg_model = tiny_model()
itg = itg_model(
    paddle.to_tensor(images[part]), paddle.to_tensor(ids[part]), paddle.to_tensor(mask[part]), losses=("itg",)
)
itg.loss.backward()

result = {
    "rank": rank,
    "world": world,
    "gathered": gathered.numpy().tolist(),
    "x_grad": x.grad.numpy().tolist(),
    "weights": weights.numpy().tolist(),
    "loss_itc": float(out.loss_itc),
    "loss_itg": float(out.loss_itg),
    "loss_itm": float(out.loss_itm),
    "query_grad_norm": float(model.qformer.query_tokens.grad.norm()),
    "itg_alone": float(itg.loss),
    "itg_grad": itg_model.lm_head.dense.weight.grad.numpy().tolist(),
}
with open(f"{out_dir}/rank{rank}.json", "w") as f:
    json.dump(result, f)
