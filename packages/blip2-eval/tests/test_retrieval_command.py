"""blip2-eval retrieval on a tiny stage-1 model, against every pair scored directly through blip2-core."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from test_retrieval_score import brute_force

from blip2_eval.cli import main

SCRIPT = str(__import__("pathlib").Path(sys.executable).parent / "blip2-eval")


def retrieval_args(model, coco, out, *extra):
    return ["retrieval", "--model", str(model), "--dataset", "coco_retrieval", "--data_files", str(coco / "images"),
            str(coco / "coco_karpathy_test.json"), "--output_dir", str(out), "--batch_size", "4", *extra]  # fmt: skip


def all_pairs(model_dir, coco):
    """ITC and ITM of every (image, text) pair with the public API, no sharing with the command's code path."""
    import paddle

    from blip2_core import Blip2Qformer
    from blip2_core.loading.text_tokenizer import load_tokenizer
    from blip2_data import ImageProcessor, ImageProcessorConfig, pad_sequences, pre_caption

    model = Blip2Qformer.from_pretrained(model_dir)
    model.eval()
    tokenizer = load_tokenizer(model_dir)
    processor = ImageProcessor(ImageProcessorConfig(image_size=28), train=False)
    rows = json.loads((coco / "coco_karpathy_test.json").read_text())
    pixels = paddle.to_tensor(np.stack([processor(str(coco / "images" / r["image"])) for r in rows]))
    texts = [pre_caption(c) for r in rows for c in r["caption"]]
    text_to_image = [i for i, r in enumerate(rows) for _ in r["caption"]]
    ids, mask = pad_sequences([list(x) for x in tokenizer(texts)["input_ids"]], 0, "right")
    ids, mask = paddle.to_tensor(ids), paddle.to_tensor(mask)
    itc = model.itc_scores(pixels, ids, mask).numpy()
    embeds = model.encode_image(pixels)
    itm = np.zeros_like(itc)
    for i in range(len(rows)):
        repeated = paddle.concat([embeds[i : i + 1]] * len(texts))
        itm[i] = model.itm_logits(repeated, ids, mask)[:, 1].numpy()
    return itc, itm, text_to_image


def lavis_combination(itc, itm, k):
    combined = np.full(itc.shape, -100.0)
    for row in range(itc.shape[0]):
        top = np.argsort(-itc[row], kind="stable")[:k]
        combined[row, top] = itm[row, top] + itc[row, top]
    return combined


@pytest.mark.parametrize("k_test", [3, 128])
def test_recalls_equal_a_direct_computation(stage1_model, coco_tree, tmp_path, k_test):
    out = tmp_path / "retrieval"
    assert main(retrieval_args(stage1_model, coco_tree, out, "--k_test", str(k_test))) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    itc, itm, text_to_image = all_pairs(stage1_model, coco_tree)
    image_to_texts = [[t for t, i in enumerate(text_to_image) if i == image] for image in range(itc.shape[0])]
    expected = brute_force(
        lavis_combination(itc, itm, k_test), lavis_combination(itc.T, itm.T, k_test), image_to_texts, text_to_image
    )
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value), key
    assert (metrics["num_images"], metrics["num_texts"]) == (6, 12)
    saved = np.load(out / "retrieval_topk.npz")
    assert saved["i2t_columns"].shape == (6, min(k_test, 12)) and saved["t2i_columns"].shape == (12, min(k_test, 6))
    np.testing.assert_allclose(
        saved["i2t_scores"], np.take_along_axis(itc + itm, saved["i2t_columns"], axis=1), rtol=1e-4, atol=1e-4
    )


def test_two_processes_give_the_same_rankings(stage1_model, coco_tree, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(retrieval_args(stage1_model, coco_tree, one, "--k_test", "4")) == 0
    launch = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--backend", "gloo",
              "--log_dir", str(tmp_path / "logs"), SCRIPT, *retrieval_args(stage1_model, coco_tree, two, "--k_test", "4")]  # fmt: skip
    done = subprocess.run(launch, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    a, b = np.load(one / "retrieval_topk.npz"), np.load(two / "retrieval_topk.npz")
    for key in ("i2t_columns", "t2i_columns", "text_to_image", "image_ids"):
        np.testing.assert_array_equal(a[key], b[key])
    for key in ("i2t_scores", "t2i_scores"):  # features computed in other batches: equal to float rounding
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-5)
    metrics_one = json.loads((one / "metrics.json").read_text())
    metrics_two = json.loads((two / "metrics.json").read_text())
    assert {k: v for k, v in metrics_two.items() if k != "run"} == {k: v for k, v in metrics_one.items() if k != "run"}
    assert sorted(p.name for p in (two / "features").iterdir()) == [
        "images-rank0-of-2.npz", "images-rank1-of-2.npz", "texts-rank0-of-2.npz", "texts-rank1-of-2.npz"
    ]  # fmt: skip
