"""Training precision as PaddleMIX and LAVIS train: fp16 by default on a GPU, frozen parts in half precision."""

import paddle
import tiny

from blip2_train.models import build_stage2_model
from blip2_train.precision import apply_part_dtypes, part_dtypes, with_default_mixed_precision


def test_a_gpu_run_trains_in_fp16_unless_told_otherwise():
    assert with_default_mixed_precision(["--output_dir", "o"], on_gpu=True)[-2:] == ["--fp16", "true"]
    for given in (["--fp16", "false"], ["--bf16", "true"], ["--fp16=false"]):
        assert with_default_mixed_precision(given, on_gpu=True) == given
    assert with_default_mixed_precision(["--output_dir", "o"], on_gpu=False) == ["--output_dir", "o"]


def test_frozen_vit_and_llm_go_to_half_precision_and_the_trained_parts_stay_float32(assets):
    model = build_stage2_model(str(assets["vision"]), str(assets["llm"]), tiny.IMAGE_SIZE, freeze_vit=True)
    dtypes = part_dtypes(model, "float16")
    assert dtypes == {"vision_model": "float16", "qformer": "float32", "language_projection": "float32",
                      "language_model": "float16"}  # fmt: skip
    apply_part_dtypes(model, dtypes)
    assert model.vision_model.blocks[0].mlp.fc1.weight.dtype == paddle.float16
    assert model.vision_model.blocks[0].norm1.weight.dtype == paddle.float32  # LayerNorms stay float32
    assert model.language_model.input_embeddings.weight.dtype == paddle.float16
    assert all(p.dtype == paddle.float32 for p in model.qformer.parameters())
    assert model.language_projection.weight.dtype == paddle.float32
    trained_vit = build_stage2_model(str(assets["vision"]), str(assets["llm"]), tiny.IMAGE_SIZE, freeze_vit=False)
    assert part_dtypes(trained_vit, "bfloat16")["vision_model"] == "float32"  # a trained ViT keeps fp32 masters
    assert set(part_dtypes(trained_vit, None).values()) == {"float32"}  # CPU, or --fp16 false
