"""The frozen LM alone, reading a caption instead of the picture: how well it answers each kind of question.

In BLIP-2 the frozen LLM writes every answer; the Q-Former only gives it the picture as soft words. So the LM's own
answers, with the picture's caption as text in its context, are a guide to what the VQA model can reach: a kind of
question that the LM gets wrong from a caption that names every group is one that the Q-Former must answer for it.
Measured this way, the recipe's LM answered "is there" 70.0% right after 650 steps and 77.0% after 1200 (test
split), while the VQA model stayed at 54-64% on it (recipe README, last section).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from .pretrain_lm import VQA_PROMPT, encode, newline_id

MAX_ANSWER_TOKENS = 4  # the longest answer ("triangle", "purple") is at most 3 BPE tokens and "\n"


def answers_given_the_caption(llm_dir: Path, split: dict[str, str]) -> dict[str, float]:
    """Each question of ``split`` (blip2-data's files: captions, questions, annotations) answered greedily by the LM
    in ``llm_dir``, after the image's last caption (the one that names every group and the background); the share
    answered exactly right, in %, per question type."""
    import numpy as np
    import paddle
    from safetensors.numpy import load_file

    from blip2_core.formats.hf import llm_from_hf
    from blip2_core.loading.text_tokenizer import load_tokenizer
    from blip2_core.model.language_model import LanguageModel
    from blip2_core.model.text_config import TextConfig

    llm_dir = Path(llm_dir)
    tokenizer = load_tokenizer(llm_dir)
    newline = newline_id(tokenizer)
    model = LanguageModel(TextConfig.from_dict(json.loads((llm_dir / "config.json").read_text())))
    missing, unexpected = model.set_state_dict(llm_from_hf(load_file(str(llm_dir / "model.safetensors")), "opt"))
    if missing or unexpected:
        raise ValueError(
            f"{llm_dir}: the LM's weights do not fit its config (missing {missing}, unexpected {unexpected})"
        )
    model.eval()

    captions = {str(row["image_id"]): row["caption"] for row in json.loads(Path(split["captions"]).read_text())}
    if any(isinstance(texts, str) for texts in captions.values()):
        raise ValueError(f"{split['captions']}: one caption per row; an evaluation split's rows hold each image's list")
    questions = {q["question_id"]: q for q in json.loads(Path(split["questions"]).read_text())["questions"]}
    right, asked = Counter(), Counter()
    for row in json.loads(Path(split["annotations"]).read_text())["annotations"]:
        question = questions[row["question_id"]]
        context = captions[str(question["image_id"])][-1]
        # the layout the LM was trained on (pretrain_lm.encode: caption, </s>, prompt), cut where the answer starts;
        # the target " x" only marks that place
        ids, labels = encode(tokenizer, context, VQA_PROMPT.format(question["question"]), " x", newline)
        ids = ids[: next(i for i, label in enumerate(labels) if label != -100)]
        answer: list[int] = []
        with paddle.no_grad():
            for _ in range(MAX_ANSWER_TOKENS):
                tokens = paddle.to_tensor([ids + answer])
                logits, _ = model.decoder_step(model.embed(tokens), paddle.ones_like(tokens))
                token = int(np.argmax(logits[0, -1].numpy()))
                if token == newline:
                    break
                answer.append(token)
        said = tokenizer.decode(answer).strip()
        kind = row["question_type"]
        asked[kind] += 1
        right[kind] += said == row["multiple_choice_answer"]
    return {kind: round(100 * right[kind] / asked[kind], 1) for kind in sorted(asked)}
