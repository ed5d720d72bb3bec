"""``InstructBlipForConditionalGeneration``: BLIP-2's stage-2 model whose Q-Former reads the instruction.

Everything is blip2-core's: the image side (EVA-ViT, the Q-Former with text beside its queries, the projection),
the LLM bridge (FlanT5 or LLaMA/Vicuna), loading in every layout, and decoding. What makes it InstructBLIP is
what it reads: the instruction goes to both the Q-Former (BERT tokens beside the 32 queries, each attending to the
other) and the LLM (after the projected query outputs), as LAVIS's ``blip2_t5_instruct`` /
``blip2_vicuna_instruct`` and HF's ``InstructBlipForConditionalGeneration`` do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import paddle

from blip2_core.model.conditional_generation import Blip2ForConditionalGeneration
from blip2_core.model.modeling import tokenize

from .config import InstructBlipConfig
from .prompts import CAPTION_PROMPT, VQA_PROMPT


class InstructBlipForConditionalGeneration(Blip2ForConditionalGeneration):
    """Instruction-following captions and answers: ``instruct(pixels, instructions, ...)``; ``forward`` /
    ``generate`` as BLIP-2's with ``qformer_input_ids`` (the instruction in BERT tokens) beside the LLM's ids."""

    config_class = InstructBlipConfig
    prompt_is_instruction = True
    vqa_prompt = VQA_PROMPT
    caption_prompt = CAPTION_PROMPT  # what blip2-eval captions with, as LAVIS's instructblip caption yamls
    # LAVIS's Q-Former tokenizer (init_tokenizer: bert-base-uncased plus [DEC]); HF's repos ship qformer_tokenizer/
    default_qformer_tokenizer = "bert-base-uncased"

    def __init__(self, config: InstructBlipConfig) -> None:
        if not isinstance(config, InstructBlipConfig):
            raise TypeError(f"InstructBLIP is built from an InstructBlipConfig, not a {type(config).__name__}")
        super().__init__(config)

    def qformer_texts(self, questions: list[str], prompts: list[str]) -> list[str]:
        # LAVIS's predict_answers hands generate the formatted prompt, which both the Q-Former and the LLM read
        return prompts

    @paddle.no_grad()
    def instruct(
        self,
        pixel_values: paddle.Tensor,
        instructions: Sequence[str],
        tokenizer: Any,
        qformer_tokenizer: Any,
        **settings: Any,
    ) -> list[str]:
        """One answer per image to its instruction (the same text in both tokenizers: the Q-Former's BERT one and
        the LLM's; left-padded for a decoder-only LLM, as LAVIS's Vicuna model pads). ``settings``: ``generate``'s
        (num_beams, max_new_tokens, repetition_penalty, ...)."""
        texts = list(instructions)
        input_ids, mask = tokenize(tokenizer, texts, left_pad=self.language_model.is_decoder_only)
        qformer_ids, qformer_mask = tokenize(qformer_tokenizer, texts, left_pad=False)
        ids = self.generate(
            pixel_values,
            input_ids,
            mask,
            qformer_input_ids=qformer_ids,
            qformer_attention_mask=qformer_mask,
            **settings,
        )
        return [text.strip() for text in tokenizer.batch_decode(ids.numpy().tolist(), skip_special_tokens=True)]
