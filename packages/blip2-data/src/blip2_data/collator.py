"""Batching: stack images, tokenise text with the model's tokenizer, pad, and build labels.

Supported tokenizers: any object with the HF-style call ``tokenizer(texts, truncation=True, max_length=n)``
returning ``input_ids`` lists, plus ``pad_token_id`` and ``all_special_ids`` — that is HF ``transformers``
tokenizers (slow and fast) and ``paddlenlp.transformers`` tokenizers (BertTokenizer for the Q-Former, the OPT /
GPT2 / T5 tokenizers of stage 2). Padding is done here, on the side asked for, so the result does not depend on
each library's padding or tensor options.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import SKIPPED_KEY
from .text import CAPTION_PROMPT, VQA_PROMPT, apply_prompt

IGNORE_INDEX = -100  # label value the losses skip


def pad_sequences(
    sequences: Sequence[Sequence[int]], pad_id: int, side: str, length: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, mask)`` int64 arrays of shape [batch, length or longest]; ``side`` is "left" or "right"."""
    longest = max(len(s) for s in sequences)
    if length is not None:
        if longest > length:
            raise ValueError(f"a sequence of {longest} tokens does not fit the fixed length {length}")
        longest = length
    ids = np.full((len(sequences), longest), pad_id, dtype=np.int64)
    mask = np.zeros((len(sequences), longest), dtype=np.int64)
    for row, seq in enumerate(sequences):
        if not seq:
            continue
        span = slice(longest - len(seq), longest) if side == "left" else slice(0, len(seq))
        ids[row, span] = seq
        mask[row, span] = 1
    return ids, mask


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class Blip2Collator:
    """Turns dataset items into a batch.

    Images (arrays from an image processor) become ``pixel_values`` [B, 3, H, W] float32. Text:

    - ``mode="qformer"``: ``text_input`` tokenised (BERT), right-padded, ``labels`` = ids with padding at -100
      (the Q-Former's ITG loss replaces the first token by [DEC] itself). ``pad_to_max_length`` pads every batch
      to ``max_length`` (LAVIS's stage 1): ranks then all-gather text ids of one shape.
    - ``mode="causal_lm"``: ``apply_prompt(prompt, text_input)`` followed by the target (``target_key``, e.g.
      ``text_input`` for captions with the "a photo of " prefix, ``text_output`` for VQA) and ``text_suffix``
      ("\\n", OPT's end of caption). Labels are -100 on padding and on prompt tokens. ``generate=True`` tokenises
      the prompt only, pads on the left (decoder-only generation needs the last position to be real text) and
      builds no labels.
    - ``mode="seq2seq"`` (FlanT5): the prompt goes to ``input_ids``, the target to ``labels`` (padding -100).

    Other keys are passed through: ints as int64 arrays (image_id, question_id), the rest as lists. Items that a
    dataset marked as skipped are dropped; ``num_skipped`` and ``skipped`` say which.
    """

    def __init__(
        self,
        tokenizer: Any,
        *,
        mode: str = "qformer",
        max_length: int = 32,
        prompt: str = "",
        target_key: str | None = "text_input",
        text_suffix: str = "",
        padding_side: str | None = None,
        generate: bool = False,
        mask_prompt: bool = True,
        target_max_length: int | None = None,
        pad_to_max_length: bool = False,
    ) -> None:
        if mode not in ("qformer", "causal_lm", "seq2seq"):
            raise ValueError(f"mode must be 'qformer', 'causal_lm' or 'seq2seq', got {mode!r}")
        if tokenizer.pad_token_id is None:
            raise ValueError(f"{type(tokenizer).__name__} has no pad token: set tokenizer.pad_token first")
        self.tokenizer, self.mode, self.max_length = tokenizer, mode, max_length
        self.prompt, self.target_key, self.text_suffix = prompt, target_key, text_suffix
        self.padding_side = padding_side or ("left" if generate and mode == "causal_lm" else "right")
        if self.padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {self.padding_side!r}")
        self.generate, self.mask_prompt = generate, mask_prompt
        self.target_max_length = target_max_length or max_length
        self.pad_to_max_length = pad_to_max_length
        self._special_ids = set(getattr(tokenizer, "all_special_ids", []))

    @classmethod
    def for_qformer(cls, tokenizer: Any, max_length: int = 32, *, pad_to_max_length: bool = True) -> Blip2Collator:
        """Stage 1: every batch padded to ``max_length`` as in LAVIS, unless ``pad_to_max_length=False``."""
        return cls(tokenizer, mode="qformer", max_length=max_length, pad_to_max_length=pad_to_max_length)

    @classmethod
    def for_causal_lm(
        cls,
        tokenizer: Any,
        prompt: str = CAPTION_PROMPT,
        *,
        target_key: str | None = "text_input",
        text_suffix: str = "\n",
        generate: bool = False,
        max_length: int = 32,
    ) -> Blip2Collator:
        """OPT-style stage 2: captions by default; VQA with ``prompt=VQA_PROMPT, target_key="text_output"``."""
        return cls(
            tokenizer,
            mode="causal_lm",
            prompt=prompt,
            target_key=target_key,
            text_suffix=text_suffix,
            generate=generate,
            max_length=max_length,
        )

    @classmethod
    def for_seq2seq(
        cls, tokenizer: Any, prompt: str = VQA_PROMPT, *, target_key: str = "text_output", max_length: int = 32
    ) -> Blip2Collator:
        return cls(tokenizer, mode="seq2seq", prompt=prompt, target_key=target_key, max_length=max_length)

    def _tokenize(self, texts: list[str], max_length: int) -> list[list[int]]:
        encoded = self.tokenizer(texts, truncation=True, max_length=max_length)
        return [list(ids) for ids in encoded["input_ids"]]

    def _prompt_texts(self, items: list[dict]) -> list[str]:
        # A template ("Question: {} Answer:") takes the item's text_input; a plain prefix ("a photo of ") is the
        # whole prompt, and the target (often text_input itself) follows it.
        if "{}" in self.prompt:
            return [apply_prompt(self.prompt, item.get("text_input", "")) for item in items]
        return [self.prompt for _ in items]

    def _targets(self, items: list[dict]) -> list[str]:
        if self.target_key is None:
            return ["" for _ in items]
        missing = [i for i, item in enumerate(items) if self.target_key not in item]
        if missing:
            raise KeyError(f"batch items {missing} have no {self.target_key!r} (keys: {sorted(items[missing[0]])})")
        return [str(item[self.target_key]) for item in items]

    def _text_fields(self, items: list[dict]) -> dict[str, np.ndarray]:
        pad_id = self.tokenizer.pad_token_id
        if self.mode == "qformer":
            length = self.max_length if self.pad_to_max_length else None
            ids, mask = pad_sequences(
                self._tokenize(self._targets(items), self.max_length), pad_id, self.padding_side, length
            )
            return {"input_ids": ids, "attention_mask": mask, "labels": np.where(mask == 1, ids, IGNORE_INDEX)}

        prompts = self._prompt_texts(items)
        if self.mode == "seq2seq":
            sources = [p or item.get("text_input", "") for p, item in zip(prompts, items)]
            ids, mask = pad_sequences(self._tokenize(sources, self.max_length), pad_id, self.padding_side)
            fields = {"input_ids": ids, "attention_mask": mask}
            if not self.generate:
                target_ids, target_mask = pad_sequences(
                    self._tokenize(self._targets(items), self.target_max_length), pad_id, "right"
                )
                fields["labels"] = np.where(target_mask == 1, target_ids, IGNORE_INDEX)
                fields["decoder_attention_mask"] = target_mask
            return fields

        if self.generate:
            ids, mask = pad_sequences(self._tokenize(prompts, self.max_length), pad_id, self.padding_side)
            return {"input_ids": ids, "attention_mask": mask}
        # "Question: q Answer:" + " yes"; a prefix that ends in a space ("a photo of ") takes the target as is.
        texts = [
            p + (" " if p and not p[-1].isspace() and t else "") + t + self.text_suffix
            for p, t in zip(prompts, self._targets(items))
        ]
        sequences = self._tokenize(texts, self.max_length)
        ids, mask = pad_sequences(sequences, pad_id, self.padding_side)
        labels = np.where(mask == 1, ids, IGNORE_INDEX)
        if self.mask_prompt and any(prompts):
            # Count prompt tokens as the shared prefix of the prompt's and the full text's tokens: tokenising the
            # prompt alone can end differently (BPE merges "of " with the next word; BERT adds [SEP]).
            for row, (prompt_ids, full_ids) in enumerate(zip(self._tokenize(prompts, self.max_length), sequences)):
                while prompt_ids and prompt_ids[-1] in self._special_ids:
                    prompt_ids = prompt_ids[:-1]
                n_prompt = common_prefix(prompt_ids, full_ids)
                start = ids.shape[1] - len(full_ids) if self.padding_side == "left" else 0
                labels[row, start : start + n_prompt] = IGNORE_INDEX
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    def __call__(self, items: list[dict]) -> dict[str, Any]:
        skipped = [item[SKIPPED_KEY] for item in items if SKIPPED_KEY in item]
        items = [item for item in items if SKIPPED_KEY not in item]
        batch: dict[str, Any] = {"num_skipped": len(skipped), "skipped": skipped}
        if not items:
            return batch
        for key in items[0]:
            values = [item[key] for item in items]
            if key == "image" and isinstance(values[0], np.ndarray):
                batch["pixel_values"] = np.stack(values).astype(np.float32, copy=False)
            elif all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                batch[key] = np.asarray(values, dtype=np.int64)
            else:
                batch[key] = values
        batch.update(self._text_fields(items))
        return batch
