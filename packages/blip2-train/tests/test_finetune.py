"""The fine-tuning recipes: caption (OPT, FlanT5), retrieval (layer-wise lr decay), VQA — tiny runs and their parts."""

import json

import numpy as np
import paddle
import pytest
import tiny

from blip2_core import Blip2ForConditionalGeneration, Blip2Qformer
from blip2_train.cli import parse
from blip2_train.vqa import weighted_answer_loss

FINETUNED_SIZE = 84  # the tiny models are made at 56 px: fine-tuning at 84 interpolates, as 224 -> 364 does


def finetune_args(command, assets, output, data, steps=10, lr="2e-3"):
    return [
        command, "--data_files", data, "--output_dir", str(output), "--per_device_train_batch_size", "4",
        "--max_steps", str(steps), "--warmup_steps", "1", "--learning_rate", lr, "--save_steps", str(steps),
        "--seed", "3", *tiny.COMMON, "--image_size", str(FINETUNED_SIZE), "--max_txt_len", "16",
    ]  # fmt: skip


def assert_falls(curve):
    assert np.mean(curve[-3:]) < np.mean(curve[:3]) - 0.05, curve


def test_recipe_defaults_are_lavis_yaml():
    model, data, training = parse("finetune-caption", ["--output_dir", "x"])
    assert (model.image_size, model.freeze_vit) == (364, False)
    assert (training.learning_rate, training.eta_min, training.warmup_start_lr) == (1e-5, 0.0, 1e-8)
    assert (training.warmup_steps, training.num_train_epochs, training.per_device_train_batch_size) == (1000, 5, 16)
    assert training.gradient_checkpointing and training.recompute and data.prompt == "a photo of "
    model, _, training = parse("finetune-retrieval", ["--output_dir", "x"])
    assert (model.image_size, model.freeze_vit, training.per_device_train_batch_size) == (364, False, 14)
    assert training.lr_layer_decay == 0.95
    _, data, _ = parse("finetune-vqa", ["--output_dir", "x"])
    assert data.dataset == ["coco_vqa"] and data.prompt == "Question: {} Short answer:"
    _, _, training = parse("stage1", ["--output_dir", "x"])
    assert training.lr_layer_decay == 1.0  # pre-training: no layer decay


def test_finetune_caption_opt(assets, tmp_path):
    out = tmp_path / "caption"
    args = finetune_args("finetune-caption", assets, out, assets["data"])
    args += ["--model_name_or_path", str(assets["vision_no_dropout"]), "--text_model_name_or_path"]
    tiny.train([*args, str(assets["llm_no_dropout"]), "--dataset", "custom_caption"], tmp_path)
    assert_falls(tiny.losses(out))
    # the ViT trained (its weights are in the checkpoint) at 84 px, its position embeddings interpolated
    ckpt = tiny.trainable_weights(out / f"checkpoint-{10}")
    assert "vision_model.blocks.0.mlp.fc1.weight" in ckpt and not any(k.startswith("language_model.") for k in ckpt)
    model = Blip2ForConditionalGeneration.from_pretrained(out)
    assert model.config.vision_config.image_size == FINETUNED_SIZE
    assert model.vision_model.pos_embed.shape == [1, (FINETUNED_SIZE // 14) ** 2 + 1, 48]
    np.testing.assert_array_equal(model.vision_model.pos_embed.numpy(), ckpt["vision_model.pos_embed"])


def test_caption_prompt_is_masked_from_the_loss(assets):
    from blip2_core.loading.text_tokenizer import load_tokenizer
    from blip2_train.run import build_collator

    model = Blip2ForConditionalGeneration.from_pretrained(
        assets["vision"], text_name_or_path=str(assets["llm"]), allow_missing_weights=True
    )  # fmt: skip
    _, data_args, _ = parse("finetune-caption", ["--output_dir", "x", "--prompt", "a dog on "])
    tokenizer = load_tokenizer(assets["llm"])
    batch = build_collator("finetune-caption", tokenizer, model, data_args)([{"text_input": "the red car"}])
    prompt_ids = tokenizer(["a dog on"])["input_ids"][0]
    n_prompt = len([i for i in prompt_ids if i not in tokenizer.all_special_ids])
    first = int(np.argmax(batch["attention_mask"][0]))
    labels = batch["labels"][0]
    assert (labels[first : first + 1 + n_prompt] == -100).sum() >= n_prompt  # the prompt is not a target
    target = tokenizer.convert_ids_to_tokens([int(t) for t in labels if t != -100])
    assert target[:3] == ["the", "red", "car"], target


def test_finetune_caption_flant5(assets, tmp_path):
    """FlanT5: the prompt into the encoder, the caption as the decoder's target; the loss falls as with OPT (the
    tiny T5 without dropout: its dropout noise, 0.1 by default, hid the learning in 10 steps)."""
    from blip2_core.loading.text_tokenizer import load_tokenizer
    from blip2_train.run import build_collator

    llm = tiny.write_llm(
        tmp_path / "t5", tiny.HERE.parents[1] / "blip2-core" / "tests" / "fixtures" / "t5" / "llm", 0.0
    )
    out = tmp_path / "caption-t5"
    args = finetune_args("finetune-caption", assets, out, assets["data"])
    args += ["--model_name_or_path", str(assets["vision_no_dropout"]), "--text_model_name_or_path", str(llm)]
    tiny.train([*args, "--dataset", "custom_caption"], tmp_path)
    assert_falls(tiny.losses(out))
    model = Blip2ForConditionalGeneration.from_pretrained(out)
    assert not model.language_model.is_decoder_only
    _, data_args, _ = parse("finetune-caption", ["--output_dir", "x", "--prompt", "a dog on "])
    tokenizer = load_tokenizer(llm)
    batch = build_collator("finetune-caption", tokenizer, model, data_args)([{"text_input": "the red car"}])
    encoder_text = tokenizer.convert_ids_to_tokens([int(t) for t in batch["input_ids"][0]])
    target = tokenizer.convert_ids_to_tokens([int(t) for t in batch["labels"][0] if t != -100])
    assert [t for t in encoder_text if t not in ("[CLS]", "[SEP]")] == ["a", "dog", "on"], encoder_text
    assert [t for t in target if t not in ("[CLS]", "[SEP]")] == ["the", "red", "car"], target


def test_finetune_retrieval(assets, tmp_path):
    out = tmp_path / "retrieval"
    args = finetune_args("finetune-retrieval", assets, out, assets["data"])
    args += ["--model_name_or_path", str(assets["vision_no_dropout"]), "--qformer_tokenizer", str(assets["bert"])]
    tiny.train([*args, "--dataset", "custom_caption"], tmp_path)
    assert_falls(tiny.losses(out))
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert all(k in log[0] for k in ("loss_itc", "loss_itm", "loss_itg"))
    assert Blip2Qformer.from_pretrained(out).config.vision_config.image_size == FINETUNED_SIZE


def test_layer_decay_reaches_each_vit_layer_through_optimizer_and_schedule(assets, tmp_path):
    """One real AdamW step from the command line: Adam's first update of a tensor is lr * g / (|g| + eps), so its
    largest change is the learning rate that tensor got. With 2 ViT blocks and decay 0.5: embeddings 0.5^3,
    block 0 0.5^2, block 1 0.5, the Q-Former 1."""
    out = tmp_path / "decay"
    lr = 1e-3
    args = finetune_args("finetune-retrieval", assets, out, assets["data"], steps=1, lr=str(lr))
    args += ["--model_name_or_path", str(assets["vision"]), "--qformer_tokenizer", str(assets["bert"])]
    args += ["--weight_decay", "0", "--warmup_steps", "0", "--lr_layer_decay", "0.5", "--image_size", "56"]
    tiny.train([*args, "--dataset", "custom_caption"], tmp_path)
    paddle.seed(3)  # the run's --seed: its fresh Q-Former weights are these
    before = Blip2Qformer.from_pretrained(assets["vision"], allow_missing_weights=True).state_dict()
    after = Blip2Qformer.from_pretrained(out).state_dict()

    def step_size(name):
        return float(np.abs(after[name].numpy() - before[name].numpy()).max())

    expected = {
        "vision_model.patch_embed.weight": 0.125, "vision_model.cls_token": 0.125, "vision_model.pos_embed": 0.125,
        "vision_model.blocks.0.mlp.fc1.weight": 0.25, "vision_model.blocks.0.attn.q_weight": 0.25,
        "vision_model.blocks.1.mlp.fc1.weight": 0.5, "vision_model.blocks.1.attn.proj.weight": 0.5,
    }  # fmt: skip
    for name, scale in expected.items():
        assert step_size(name) == pytest.approx(lr * scale, rel=1e-3), name
    # outside the ViT: the full rate (the Q-Former's queries, freshly initialised here, always get a gradient)
    assert step_size("qformer.query_tokens") == pytest.approx(lr, rel=1e-3)


def test_finetune_vqa(assets, tmp_path):
    data = tiny.write_vqa(tmp_path / "vqa")
    out = tmp_path / "vqa-out"
    args = finetune_args("finetune-vqa", assets, out, data)
    args += ["--model_name_or_path", str(assets["vision_no_dropout"]), "--qformer_tokenizer", str(assets["bert"])]
    tiny.train([*args, "--text_model_name_or_path", str(assets["llm_no_dropout"]), "--dataset", "coco_vqa"], tmp_path)
    assert_falls(tiny.losses(out))
    model = Blip2ForConditionalGeneration.from_pretrained(out)
    assert model.config.qformer_config.has_text_input  # the question's way into the Q-Former was trained
    ckpt = tiny.trainable_weights(out / "checkpoint-10")
    assert "qformer.embeddings.word_embeddings.weight" in ckpt
    assert (out / "qformer_tokenizer" / "vocab.txt").read_text() == (assets["bert"] / "vocab.txt").read_text()
    # saved so that answering gives the question to the Q-Former too (blip2-predict, blip2-serve, blip2-eval)
    assert model.config.qformer_text_input
    from blip2_core.inference.predictor import Predictor

    assert Predictor.load(str(out)).qformer_tokenizer is not None


def test_finetune_vqa_without_the_question_in_the_qformer(assets, tmp_path):
    """--qformer_question false: the LLM alone reads the question; the Q-Former gets no text parts, the batches no
    Q-Former tokens, and the saved model answers as a zero-shot one does."""
    from blip2_train.arguments import ModelArguments
    from blip2_train.run import build_training_collator, question_in_qformer

    assert question_in_qformer("finetune-vqa", ModelArguments())
    assert not question_in_qformer("finetune-vqa", ModelArguments(qformer_question=False))
    assert question_in_qformer("finetune-instruct", ModelArguments(qformer_question=False))  # InstructBLIP's design
    out = tmp_path / "vqa-out"
    args = finetune_args("finetune-vqa", assets, out, tiny.write_vqa(tmp_path / "vqa"))
    args += ["--model_name_or_path", str(assets["vision_no_dropout"]), "--qformer_question", "false"]
    tiny.train([*args, "--text_model_name_or_path", str(assets["llm_no_dropout"]), "--dataset", "coco_vqa"], tmp_path)
    assert_falls(tiny.losses(out))
    model = Blip2ForConditionalGeneration.from_pretrained(out)
    assert not model.config.qformer_text_input and not model.config.qformer_config.has_text_input
    assert "qformer.embeddings.word_embeddings.weight" not in tiny.trainable_weights(out / "checkpoint-10")
    assert not (out / "qformer_tokenizer").exists()
    model_args, data_args, _ = parse("finetune-vqa", ["--output_dir", "x", "--qformer_question", "false"])
    from blip2_core.loading.text_tokenizer import load_tokenizer

    collator = build_training_collator("finetune-vqa", load_tokenizer(out), model, data_args, model_args)
    image = np.zeros([3, FINETUNED_SIZE, FINETUNED_SIZE], np.float32)
    batch = collator([{"image": image, "text_input": "what?", "answers": ["a", "b"], "weights": [0.5, 0.5]}])
    assert "qformer_input_ids" not in batch and batch["input_ids"].shape[0] == 2


def test_finetune_vqa_flant5(assets, tmp_path):
    """FlanT5: prompt with the question into the encoder, each answer a decoder target; the loss falls."""
    llm = tiny.write_llm(
        tmp_path / "t5", tiny.HERE.parents[1] / "blip2-core" / "tests" / "fixtures" / "t5" / "llm", 0.0
    )
    out = tmp_path / "vqa-t5"
    args = finetune_args("finetune-vqa", assets, out, tiny.write_vqa(tmp_path / "vqa"))
    args += ["--model_name_or_path", str(assets["vision_no_dropout"]), "--qformer_tokenizer", str(assets["bert"])]
    tiny.train([*args, "--text_model_name_or_path", str(llm), "--dataset", "coco_vqa"], tmp_path)
    assert_falls(tiny.losses(out))


def test_question_enters_the_qformer_beside_the_queries(assets):
    from blip2_train.models import build_stage2_model

    model = build_stage2_model(str(assets["vision"]), str(assets["llm"]), 56, True, qformer_text=True)
    model.eval()
    pixels = paddle.randn([2, 3, 56, 56])
    ids = paddle.to_tensor([[2, 6, 7, 3], [2, 8, 3, 0]])
    mask = paddle.to_tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    with paddle.no_grad():
        plain = model.get_image_features(pixels)
        asked = model.get_image_features(pixels, qformer_input_ids=ids, qformer_attention_mask=mask)
        other = model.get_image_features(pixels, qformer_input_ids=ids[::-1], qformer_attention_mask=mask[::-1])
        padded = model.get_image_features(
            pixels, qformer_input_ids=paddle.concat([ids, paddle.zeros([2, 2], "int64")], 1),
            qformer_attention_mask=paddle.concat([mask, paddle.zeros([2, 2], "int64")], 1),
        )  # fmt: skip
    assert asked.shape == plain.shape == [2, 4, model.language_model.hidden_size]  # only the queries go on
    assert not np.allclose(asked.numpy(), plain.numpy(), atol=1e-4)
    assert not np.allclose(asked.numpy()[0], other.numpy()[0], atol=1e-4)  # a different question, other tokens
    np.testing.assert_allclose(asked.numpy(), padded.numpy(), atol=1e-5)  # padding is not attended to
    # forward passes the question through to the same features
    with paddle.no_grad():
        logits = model(pixels, ids[:, :2], qformer_input_ids=ids, qformer_attention_mask=mask).logits
        expected = model(image_features=asked, input_ids=ids[:, :2]).logits
    np.testing.assert_allclose(logits.numpy(), expected.numpy(), atol=1e-5)


def test_weighted_answer_loss_weighs_each_answer_row():
    paddle.seed(0)
    logits = paddle.randn([4, 6, 11])  # 2 questions x 2 answer rows, a decoder-only LLM's (queries + text)
    labels = paddle.to_tensor([[5, 7, -100], [4, -100, -100], [1, 2, 3], [9, 9, -100]])
    weights = paddle.to_tensor([0.75, 0.25, 1.0, 0.0])  # the second question's padding row weighs nothing
    aligned = logits[:, 2:5].numpy()
    log_probs = aligned - np.log(np.exp(aligned).sum(-1, keepdims=True))
    rows = []
    for row in range(4):
        valid = [(p, int(t)) for p, t in enumerate(labels.numpy()[row]) if t != -100]
        rows.append(-np.mean([log_probs[row, p, t] for p, t in valid]))
    expected = (0.75 * rows[0] + 0.25 * rows[1] + rows[2]) / 2
    assert float(weighted_answer_loss(logits, labels, weights)) == pytest.approx(expected, rel=1e-5)


def test_frozen_parameters_hold_no_gradient_or_optimizer_state(assets):
    """A stage-2 step with the real optimizer: the frozen ViT and LLM get no gradient and no AdamW moments."""
    from blip2_train import WarmupCosineSchedule, build_adamw
    from blip2_train.models import build_stage2_model

    model = build_stage2_model(str(assets["vision"]), str(assets["llm"]), 56, freeze_vit=True)
    model.train()
    optimizer = build_adamw(model, WarmupCosineSchedule(1e-3, 1e-4, 0, 10), 0.05)
    ids = paddle.to_tensor([[5, 6, 7, 8], [9, 10, 11, 12]])
    model(paddle.randn([2, 3, 56, 56]), ids, labels=ids).loss.backward()
    optimizer.step()
    frozen = {n: p for n, p in model.named_parameters() if p.stop_gradient}
    trainable = {n: p for n, p in model.named_parameters() if not p.stop_gradient}
    assert any(n.startswith("vision_model.") for n in frozen) and any(n.startswith("language_model.") for n in frozen)
    assert all(p.grad is None for p in frozen.values()), [n for n, p in frozen.items() if p.grad is not None]
    assert all(p.grad is not None for p in trainable.values())
    state_keys = [k for k in optimizer.state_dict() if k != "LR_Scheduler"]
    owners = {p.name for p in model.parameters() if any(k.startswith(p.name + "_") for k in state_keys)}
    assert owners == {p.name for p in trainable.values()}
