"""The cross-rank gathers of ITC/ITM in two real processes (gloo on CPU), against one process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle
import pytest
from tiny_stage1 import batch, tiny_model

from blip2_qformer import all_gather_with_grad, concat_all_gather

HERE = Path(__file__).parent


def test_single_process_gathers_are_identity():
    x = paddle.to_tensor([[1.0, 2.0]], stop_gradient=False)
    assert all_gather_with_grad(x) is x
    gathered = concat_all_gather(x)
    assert gathered.stop_gradient
    np.testing.assert_array_equal(gathered.numpy(), x.numpy())


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PADDLE_", "FLAGS_"))}
    env["CUDA_VISIBLE_DEVICES"] = ""
    cmd = [
        sys.executable,
        "-m",
        "paddle.distributed.launch",
        "--nproc_per_node",
        "2",
        "--backend",
        "gloo",
        "--log_dir",
        str(out / "log"),
        str(HERE / "dist_worker.py"),
        str(out),
    ]
    proc = subprocess.run(cmd, env=env, cwd=out, capture_output=True, text=True, timeout=240)
    logs = "".join(p.read_text() for p in sorted((out / "log").glob("*")) if p.is_file())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:] + logs[-3000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def test_gather_with_grad_returns_every_shard_and_sums_gradients(two_ranks):
    r0, r1 = two_ranks
    assert (r0["world"], r1["world"]) == (2, 2)
    expected = np.concatenate([np.arange(6).reshape(2, 3), np.arange(6).reshape(2, 3) + 10]).astype("float32")
    np.testing.assert_array_equal(r0["gathered"], expected)
    np.testing.assert_array_equal(r1["gathered"], expected)
    w0, w1 = np.array(r0["weights"]), np.array(r1["weights"])
    # rank r's shard is read by both ranks' losses: its gradient is the sum of their weights on its rows
    np.testing.assert_allclose(r0["x_grad"], w0[:2] + w1[:2], rtol=1e-6)
    np.testing.assert_allclose(r1["x_grad"], w0[2:] + w1[2:], rtol=1e-6)


def test_two_ranks_give_the_single_process_losses(two_ranks):
    """ITC over gathered features and ITG over the global batch's tokens: the mean over ranks equals one process
    on the whole batch (rank 1's last caption is shorter, so per-rank token means would not)."""
    model = tiny_model()
    images, ids, mask = batch()
    out = model(paddle.to_tensor(images), paddle.to_tensor(ids), paddle.to_tensor(mask), losses=("itc", "itg"))
    ranks_itc = np.mean([r["loss_itc"] for r in two_ranks])
    np.testing.assert_allclose(ranks_itc, float(out.loss_itc), rtol=1e-5)
    np.testing.assert_allclose(np.mean([r["loss_itg"] for r in two_ranks]), float(out.loss_itg), rtol=1e-5)
    for result in two_ranks:
        assert np.isfinite(result["loss_itm"]) and result["query_grad_norm"] > 0


def test_two_ranks_give_the_single_process_itg_gradient(two_ranks):
    """DataParallel averages the ranks' gradients: that average is the gradient of one process's ITG."""
    model = tiny_model()
    images, ids, mask = batch()
    out = model(paddle.to_tensor(images), paddle.to_tensor(ids), paddle.to_tensor(mask), losses=("itg",))
    out.loss.backward()
    np.testing.assert_allclose(np.mean([r["itg_alone"] for r in two_ranks]), float(out.loss), rtol=1e-5)
    averaged = np.mean([np.array(r["itg_grad"]) for r in two_ranks], axis=0)
    np.testing.assert_allclose(averaged, model.lm_head.dense.weight.grad.numpy(), rtol=1e-4, atol=1e-7)
    # the per-rank token means this replaces weigh the shorter caption's tokens more: another gradient
    halves = [
        model(paddle.to_tensor(images[p]), paddle.to_tensor(ids[p]), paddle.to_tensor(mask[p]), losses=("itg",)).loss
        for p in (slice(0, 2), slice(2, 4))
    ]
    assert abs(float(halves[0] + halves[1]) / 2 - float(out.loss)) > 1e-4
