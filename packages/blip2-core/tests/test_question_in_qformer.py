"""A model VQA-fine-tuned with the question beside the Q-Former's queries (config ``qformer_text_input``):
predict_answers, the Predictor (blip2-predict, blip2-serve) and the tokenizer lookup give the question to the
Q-Former, in the BERT tokens of ``qformer_tokenizer/``; every other model behaves as before."""

import dataclasses
import json
import shutil

import numpy as np
import paddle
import pytest
from PIL import Image
from tiny_checkpoints import copy_with_wordpiece_tokenizer

from blip2_core import Blip2Config, Blip2ForConditionalGeneration
from blip2_core.loading.text_tokenizer import QFORMER_TOKENIZER_DIR, load_tokenizer, qformer_tokenizer_for_model
from blip2_core.model.modeling import tokenize

QUESTIONS = ["what is in the picture", "what is the cat"]


@pytest.fixture(scope="module")
def vqa_dir(model_dir, tmp_path_factory):
    """The tiny OPT model with Q-Former text parts, saved as blip2-train finetune-vqa saves one: the flag in
    config.json and the Q-Former's WordPiece tokenizer in qformer_tokenizer/."""
    config = Blip2Config.from_file(model_dir / "config.json")
    qformer = config.qformer_config
    config.qformer_config = dataclasses.replace(qformer, has_text_input=True, bos_token_id=qformer.vocab_size - 1)
    config.qformer_text_input = True
    paddle.seed(0)
    # the HF checkpoint has no Q-Former text parts: they start fresh here, as finetune-vqa starts them
    model = Blip2ForConditionalGeneration.from_pretrained(model_dir, config=config, allow_missing_weights=True)
    # fresh text embeddings are tiny (std 0.02); larger ones make the question's effect plain in a random model
    words = model.qformer.embeddings.word_embeddings.weight
    words.set_value(paddle.to_tensor(np.random.RandomState(1).normal(0, 1.0, words.shape).astype("float32")))
    out = tmp_path_factory.mktemp("vqa") / "blip2-vqa"
    model.save_pretrained(out, tokenizer=load_tokenizer(model_dir))
    # the Q-Former's own WordPiece vocabulary (its size), as finetune-vqa saves it
    bert = copy_with_wordpiece_tokenizer(model_dir, tmp_path_factory.mktemp("bert") / "b", qformer.vocab_size)
    (out / QFORMER_TOKENIZER_DIR).mkdir()
    for name in ("vocab.txt", "tokenizer_config.json"):
        shutil.copy(bert / name, out / QFORMER_TOKENIZER_DIR / name)
    return out


@pytest.fixture(scope="module")
def vqa_model(vqa_dir):
    model = Blip2ForConditionalGeneration.from_pretrained(vqa_dir)
    model.eval()
    return model


def pixels(count=2, seed=0):
    return paddle.to_tensor(np.random.RandomState(seed).normal(size=(count, 3, 56, 56)).astype("float32"))


def test_the_flag_is_saved_and_off_by_default(vqa_dir, model_dir):
    assert json.loads((vqa_dir / "config.json").read_text())["qformer_text_input"] is True
    assert Blip2Config.from_file(model_dir / "config.json").qformer_text_input is False  # an HF checkpoint
    values = Blip2Config.from_file(vqa_dir / "config.json").to_dict()
    values["qformer_config"]["has_text_input"] = False
    with pytest.raises(ValueError, match="has_text_input"):
        Blip2Config.from_dict(values)


def test_answers_read_the_question_in_the_qformer(vqa_model, vqa_dir, monkeypatch):
    tokenizer, bert = load_tokenizer(vqa_dir), load_tokenizer(vqa_dir / QFORMER_TOKENIZER_DIR)
    images = pixels()
    seen = []  # what the Q-Former was given (the real method runs)
    real = vqa_model.get_image_features
    monkeypatch.setattr(vqa_model, "get_image_features", lambda *a, **k: seen.append(k) or real(*a, **k))
    answers = vqa_model.predict_answers(images, QUESTIONS, tokenizer, qformer_tokenizer=bert, num_beams=1)
    monkeypatch.undo()

    # by hand: the question's BERT ids beside the queries, then the LLM on the prompt
    ids, mask = tokenize(bert, QUESTIONS, left_pad=False)
    assert len(seen) == 1 and seen[0]["qformer_input_ids"].numpy().tolist() == ids.numpy().tolist()
    with_text = vqa_model.get_image_features(images, qformer_input_ids=ids, qformer_attention_mask=mask)
    prompt_ids, prompt_mask = tokenize(tokenizer, [f"Question: {q} Answer:" for q in QUESTIONS], left_pad=True)
    settings = {"num_beams": 1, "max_new_tokens": 10, "min_new_tokens": 1, "length_penalty": -1.0}
    by_hand = vqa_model.generate(None, prompt_ids, prompt_mask, image_features=with_text, **settings)
    assert answers == [t.strip() for t in tokenizer.batch_decode(by_hand.numpy().tolist(), skip_special_tokens=True)]

    # and the question matters: without it the visual tokens, and the LLM's next-token scores, differ
    without = vqa_model.get_image_features(images)
    assert float((with_text - without).abs().max()) > 1e-2
    scores = [vqa_model(input_ids=prompt_ids, attention_mask=prompt_mask, image_features=f).logits[:, -1]
              for f in (with_text, without)]  # fmt: skip
    assert float((scores[0] - scores[1]).abs().max()) > 1e-3


def test_the_question_is_required_in_bert_tokens_and_features_cannot_stand_in(vqa_model, vqa_dir):
    tokenizer = load_tokenizer(vqa_dir)
    with pytest.raises(ValueError, match="qformer_tokenizer"):
        vqa_model.predict_answers(pixels(1), QUESTIONS[:1], tokenizer)
    bert = load_tokenizer(vqa_dir / QFORMER_TOKENIZER_DIR)
    features = vqa_model.get_image_features(pixels(1))
    with pytest.raises(ValueError, match="depend on the question"):
        vqa_model.predict_answers(None, QUESTIONS[:1], tokenizer, qformer_tokenizer=bert, image_features=features)


def test_other_models_ignore_a_qformer_tokenizer(model_dir):
    model = Blip2ForConditionalGeneration.from_pretrained(model_dir)
    model.eval()
    tokenizer = load_tokenizer(model_dir)
    assert qformer_tokenizer_for_model(model, model_dir) is None
    plain = model.predict_answers(pixels(), QUESTIONS, tokenizer, num_beams=1)
    assert model.predict_answers(pixels(), QUESTIONS, tokenizer, qformer_tokenizer=tokenizer, num_beams=1) == plain


def test_a_missing_qformer_tokenizer_is_a_clear_error(vqa_dir, tmp_path):
    from blip2_core.inference.predictor import Predictor

    broken = tmp_path / "no-qformer-tokenizer"
    shutil.copytree(vqa_dir, broken, ignore=shutil.ignore_patterns(QFORMER_TOKENIZER_DIR))
    with pytest.raises(ValueError, match=r"qformer_text_input.*qformer_tokenizer.*vocab\.txt"):
        Predictor.load(str(broken))


def test_predict_and_serve_give_the_question_to_the_qformer(vqa_dir, vqa_model, tmp_path, capsys):
    from blip2_core.cli.predict import main
    from blip2_core.inference.predictor import GenerationSettings, Predictor

    predictor = Predictor.load(str(vqa_dir))  # what blip2-predict and blip2-serve load
    assert predictor.qformer_tokenizer is not None and predictor.describe()["question_in_qformer"] is True
    image = tmp_path / "image.png"
    Image.fromarray(np.random.RandomState(2).randint(0, 255, (40, 40, 3), dtype=np.uint8)).save(image)
    pixel_array = predictor.pixels(Image.open(image).convert("RGB"))
    answer = predictor.answer([pixel_array], ["What is the CAT?"], GenerationSettings(num_beams=1))

    bert = load_tokenizer(vqa_dir / QFORMER_TOKENIZER_DIR)
    expected = vqa_model.predict_answers(  # lower-cased, as blip2-eval and LAVIS clean questions
        paddle.to_tensor(np.stack([pixel_array])), ["what is the cat?"], load_tokenizer(vqa_dir), qformer_tokenizer=bert,
        num_beams=1,
    )  # fmt: skip
    assert answer == expected

    code = main(["--model", str(vqa_dir), "--image", str(image), "--question", "What is the CAT?",
                 "--num-beams", "1", "--json"])  # fmt: skip
    assert code == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [row["answer"] for row in rows] == expected
