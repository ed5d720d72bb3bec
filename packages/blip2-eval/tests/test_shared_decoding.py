"""blip2-eval decodes a model as blip2-predict and blip2-serve do: one settings type, LAVIS's per-LLM defaults."""

import pytest


@pytest.mark.parametrize("llm", ["opt", "t5"])
def test_predict_serve_and_eval_decode_a_model_alike(llm, opt_model, t5_model):
    from blip2_core.inference.predictor import Predictor
    from blip2_eval.settings import CAPTION_DEFAULTS, VQA_DEFAULTS

    predictor = Predictor.load(str(opt_model if llm == "opt" else t5_model))
    llm_type = predictor.model.config.llm_type
    for task, evaluation in (("vqa", VQA_DEFAULTS["coco_vqa"]), ("caption", CAPTION_DEFAULTS["coco_caption"])):
        evaluated = evaluation.for_model(task, llm_type, (2,)).generate_kwargs()
        served = predictor.settings_for(task)
        for name in ("num_beams", "max_new_tokens", "min_new_tokens", "length_penalty", "repetition_penalty"):
            assert served[name] == evaluated[name], (task, name)
    # LAVIS's predict_answers: OPT 0, FlanT5 -1 (blip2-predict used -1 for both before)
    assert predictor.settings_for("vqa")["length_penalty"] == (0.0 if llm == "opt" else -1.0)
