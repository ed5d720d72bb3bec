"""AdamW parameter groups on the real models and the learning-rate schedule's values."""

import math

import numpy as np
import paddle
import pytest
import tiny

from blip2_core import Blip2Config, Blip2Qformer
from blip2_train import WarmupCosineSchedule, build_adamw, parameter_groups
from blip2_train.models import build_stage2_model


def test_schedule_warms_up_linearly_then_follows_a_cosine_to_eta_min():
    peak, eta_min, start, warmup, total = 1e-4, 1e-5, 1e-6, 4, 12
    schedule = WarmupCosineSchedule(peak, eta_min, warmup, total, warmup_start_lr=start)
    seen = []
    for _ in range(total + 2):
        seen.append(schedule.get_lr())
        schedule.step()
    # independent closed forms: a straight line to the peak, then half a cosine period down to eta_min
    for step in range(warmup):
        assert seen[step] == pytest.approx(start + (peak - start) * step / warmup, rel=1e-12)
    assert seen[warmup] == pytest.approx(peak)
    assert seen[warmup + (total - warmup) // 2] == pytest.approx((peak + eta_min) / 2)  # the cosine's midpoint
    assert seen[total] == pytest.approx(eta_min) and seen[total + 1] == pytest.approx(eta_min)
    decay = seen[warmup : total + 1]
    assert all(a > b for a, b in zip(decay, decay[1:]))  # strictly falling: no staircase
    assert len(set(np.round(decay, 12))) == len(decay)
    t = 3 / (total - warmup)
    assert seen[warmup + 3] == pytest.approx(eta_min + (peak - eta_min) * (1 + math.cos(math.pi * t)) / 2)


def test_schedule_state_round_trips():
    a = WarmupCosineSchedule(1e-3, 1e-5, 2, 10)
    for _ in range(5):
        a.step()
    b = WarmupCosineSchedule(1e-3, 1e-5, 2, 10)
    b.set_state_dict(a.state_dict())
    assert b.get_lr() == a.get_lr() and b.last_epoch == 5


def stage1_model():
    paddle.seed(0)
    return Blip2Qformer(Blip2Config(vision_config=tiny.vision_config(), qformer_config=tiny.qformer_config(0.1)))


def test_groups_of_the_stage1_model_follow_lavis():
    model = stage1_model()
    groups = parameter_groups(model)
    trainable = {n for n, p in model.named_parameters() if not p.stop_gradient}
    assert set(groups.decay) | set(groups.no_decay) == trainable
    assert not any(name.startswith("vision_model.") for name in trainable)  # frozen ViT: not optimised
    assert set(groups.no_decay) == {n for n, p in model.named_parameters() if not p.stop_gradient and p.ndim < 2}
    for name in ("temp", "qformer.layers.0.attention.query.bias", "qformer.embeddings.layer_norm.weight",
                 "qformer.ln_vision.weight", "lm_head.bias", "qformer.layers.1.query_ffn.layer_norm.bias"):  # fmt: skip
        assert name in groups.no_decay
    for name in ("qformer.query_tokens", "qformer.layers.0.crossattention.key.weight", "vision_proj.weight",
                 "qformer.embeddings.word_embeddings.weight", "itm_head.weight"):  # fmt: skip
        assert name in groups.decay


def test_adamw_decays_exactly_the_decay_group():
    model = stage1_model()
    groups = parameter_groups(model)
    before = {n: p.numpy().copy() for n, p in model.named_parameters()}
    optimizer = build_adamw(model, learning_rate=0.1, weight_decay=0.5)
    (paddle.add_n([p.sum() for p in groups.parameters]) * 0.0).backward()  # zero gradients: only decay moves weights
    optimizer.step()
    for name, param in model.named_parameters():
        after = param.numpy()
        if name in groups.decay:
            np.testing.assert_allclose(after, before[name] * (1 - 0.1 * 0.5), rtol=1e-6, err_msg=name)
        else:  # 1-D trainable weights and the frozen ViT
            np.testing.assert_array_equal(after, before[name], err_msg=name)


def test_stage2_optimises_only_the_qformer_queries_and_projection(assets):
    model = build_stage2_model(str(assets["vision"]), str(assets["llm"]), tiny.IMAGE_SIZE, freeze_vit=True)
    groups = parameter_groups(model)
    names = set(groups.decay) | set(groups.no_decay)
    assert names and all(n.startswith(("qformer.", "language_projection.")) for n in names)
    assert "language_projection.weight" in groups.decay and "language_projection.bias" in groups.no_decay
    assert not any("embeddings.word_embeddings" in n or ".ffn." in n for n in names)  # stage 2 drops the text parts
    unfrozen = build_stage2_model(str(assets["vision"]), str(assets["llm"]), tiny.IMAGE_SIZE, freeze_vit=False)
    vit = {n for n in parameter_groups(unfrozen).decay if n.startswith("vision_model.")}
    assert vit  # the ViT trains when unfrozen
