"""Run by test_distributed.py under `paddle.distributed.launch --nproc_per_node 2` (gloo, CPU)."""

import json
import sys

import numpy as np
import paddle
import paddle.distributed as dist

from blip2_qformer import QFormerConfig, QFormerForPretraining, all_gather_with_grad, rank_and_world_size

out_dir = sys.argv[1]
dist.init_parallel_env()
rank, world = rank_and_world_size()

# 1. all_gather_with_grad: each rank's shard gets the gradient every rank's loss sends it.
x = paddle.to_tensor(np.arange(6, dtype="float32").reshape(2, 3) + 10 * rank, stop_gradient=False)
weights = paddle.to_tensor(np.random.RandomState(rank).rand(4, 3).astype("float32"))
gathered = all_gather_with_grad(x)
(gathered * weights).sum().backward()

# 2. stage-1 losses on this rank's half of a batch of 4.
paddle.seed(0)
config = QFormerConfig(
    vocab_size=50,
    hidden_size=16,
    num_layers=2,
    num_heads=2,
    intermediate_size=24,
    encoder_hidden_size=12,
    num_query_tokens=4,
    max_position_embeddings=16,
    embed_dim=8,
    bos_token_id=49,
)
model = QFormerForPretraining(config)
model.eval()
rng = np.random.RandomState(7)
images = rng.randn(4, 5, 12).astype("float32")
ids = rng.randint(1, 49, size=(4, 6)).astype("int64")
mask = np.ones((4, 6), dtype="int64")
mask[3, 4:] = 0
part = slice(2 * rank, 2 * rank + 2)
out = model(paddle.to_tensor(images[part]), paddle.to_tensor(ids[part]), paddle.to_tensor(mask[part]))
out.loss.backward()

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
}
with open(f"{out_dir}/rank{rank}.json", "w") as f:
    json.dump(result, f)
