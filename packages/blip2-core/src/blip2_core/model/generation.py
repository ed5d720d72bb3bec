"""Greedy, sampling and beam-search decoding with a KV cache, over any step function.

paddlenlp's ``generate`` cannot be used for BLIP-2: with ``inputs_embeds`` its OPT beam search expands
the ids but not the embeddings. This loop follows HF transformers' semantics (the reference our tests
compare with): logits processors in HF's order, beam search with ``2 * num_beams`` candidates, the
length penalty on the number of generated tokens, and early stopping when no running beam can beat
the finished ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import paddle
import paddle.nn.functional as F

NEG_INF = -1.0e9


@dataclass
class GenerationConfig:
    """Decoding settings. ``num_beams > 1`` is beam search; ``do_sample`` samples (with beams: beam sampling)."""

    max_new_tokens: int = 30
    min_new_tokens: int = 0
    num_beams: int = 1
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    length_penalty: float = 1.0
    num_return_sequences: int = 1
    early_stopping: bool = False
    eos_token_id: Sequence[int] = field(default_factory=tuple)
    pad_token_id: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.eos_token_id, int):
            self.eos_token_id = (self.eos_token_id,)
        self.eos_token_id = tuple(self.eos_token_id or ())
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.num_beams < 1 or self.num_return_sequences < 1:
            raise ValueError("num_beams and num_return_sequences must be >= 1")
        if self.num_return_sequences > self.num_beams and self.num_beams > 1:
            raise ValueError(f"num_return_sequences ({self.num_return_sequences}) > num_beams ({self.num_beams})")
        if self.num_return_sequences > 1 and self.num_beams == 1 and not self.do_sample:
            raise ValueError("greedy decoding returns one sequence: use do_sample=True or num_beams > 1")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")


class Stepper(Protocol):
    """The model side of decoding: next-token logits for every row, with a cache kept inside."""

    def start(self, rows: paddle.Tensor) -> paddle.Tensor:
        """Run the prompts of batch rows ``rows`` (repeated for beams / samples): logits [len(rows), vocab]."""

    def next(self, tokens: paddle.Tensor) -> paddle.Tensor:
        """Feed one token per row [rows]; logits [rows, vocab]."""

    def select(self, rows: paddle.Tensor) -> None:
        """Keep (and reorder / repeat) cache rows: row i becomes old row ``rows[i]``."""


def _process(scores: paddle.Tensor, history: paddle.Tensor, new_tokens: int, config: GenerationConfig) -> paddle.Tensor:
    """HF's logits processors, in its order: repetition penalty, then the min-new-tokens EOS ban."""
    if config.repetition_penalty != 1.0:
        seen = paddle.take_along_axis(scores, history, axis=1)
        penalised = paddle.where(seen < 0, seen * config.repetition_penalty, seen / config.repetition_penalty)
        scores = paddle.put_along_axis(scores, history, penalised, axis=1)
    if new_tokens < config.min_new_tokens and config.eos_token_id:
        ban = paddle.zeros([scores.shape[-1]], dtype=scores.dtype)
        ban[list(config.eos_token_id)] = float("-inf")
        scores = scores + ban
    return scores


def _warp(scores: paddle.Tensor, config: GenerationConfig) -> paddle.Tensor:
    """Sampling warpers, HF's order: temperature, top-k, top-p (nucleus)."""
    if config.temperature != 1.0:
        scores = scores / config.temperature
    if config.top_k > 0:
        kth = paddle.topk(scores, min(config.top_k, scores.shape[-1]), axis=-1)[0][:, -1:]
        scores = paddle.where(scores < kth, paddle.full_like(scores, float("-inf")), scores)
    if config.top_p < 1.0:
        sorted_scores, order = paddle.sort(scores, axis=-1), paddle.argsort(scores, axis=-1)
        cumulative = F.softmax(sorted_scores, axis=-1).cumsum(-1)
        remove_sorted = (cumulative <= 1 - config.top_p).astype("int32")
        remove_sorted[:, -1] = 0  # always keep the most likely token
        remove = paddle.put_along_axis(paddle.zeros_like(remove_sorted), order, remove_sorted, axis=1).astype("bool")
        scores = paddle.where(remove, paddle.full_like(scores, float("-inf")), scores)
    return scores


def _is_eos(tokens: paddle.Tensor, config: GenerationConfig) -> paddle.Tensor:
    hit = paddle.zeros(tokens.shape, dtype=paddle.bool)
    for eos in config.eos_token_id:
        hit = hit | (tokens == eos)
    return hit


def generate(
    stepper: Stepper, prompt_ids: paddle.Tensor, config: GenerationConfig, vocab_size: int | None = None
) -> paddle.Tensor:
    """Decode new tokens for every prompt row.

    ``prompt_ids`` [batch, length] are the ids that count as already seen for the repetition penalty
    (HF's ``input_ids``). Returns [batch * num_return_sequences, new] ids, ``pad_token_id`` after EOS.
    """
    if vocab_size is not None:
        outside = [t for t in (*config.eos_token_id, config.pad_token_id) if not 0 <= t < vocab_size]
        if outside:  # indexing the scores with them would write outside the tensor
            raise ValueError(f"eos/pad token ids {outside} are outside the vocabulary of {vocab_size}")
    if config.num_beams > 1:
        return _beam_search(stepper, prompt_ids, config)
    return _greedy_or_sample(stepper, prompt_ids, config)


def _greedy_or_sample(stepper: Stepper, prompt_ids: paddle.Tensor, config: GenerationConfig) -> paddle.Tensor:
    copies = config.num_return_sequences
    rows = paddle.arange(prompt_ids.shape[0]).repeat_interleave(copies)
    history = paddle.index_select(prompt_ids, rows, axis=0)
    logits = stepper.start(rows)
    finished = paddle.zeros([history.shape[0]], dtype=paddle.bool)
    generated: list[paddle.Tensor] = []
    for step in range(config.max_new_tokens):
        scores = _process(logits.astype(paddle.float32), history, step, config)
        if config.do_sample:
            probs = F.softmax(_warp(scores, config), axis=-1)
            tokens = paddle.multinomial(probs, 1).flatten()
        else:
            tokens = scores.argmax(-1)
        tokens = paddle.where(finished, paddle.full_like(tokens, config.pad_token_id), tokens)
        generated.append(tokens)
        history = paddle.concat([history, tokens.unsqueeze(1)], axis=1)
        finished = finished | _is_eos(tokens, config)
        if bool(finished.all()) or step + 1 == config.max_new_tokens:
            break
        logits = stepper.next(tokens)
    return paddle.stack(generated, axis=1)


def _beam_search(stepper: Stepper, prompt_ids: paddle.Tensor, config: GenerationConfig) -> paddle.Tensor:
    batch, beams, steps = prompt_ids.shape[0], config.num_beams, config.max_new_tokens
    keep = max(2, 1 + len(config.eos_token_id)) * beams  # candidates per step, as HF
    rows = paddle.arange(batch).repeat_interleave(beams)
    history = paddle.index_select(prompt_ids, rows, axis=0)
    logits = stepper.start(rows)
    vocab = logits.shape[-1]
    fill = config.pad_token_id

    running = np.full((batch, beams, steps), fill, dtype=np.int64)
    running_scores = np.zeros((batch, beams), dtype=np.float32)
    running_scores[:, 1:] = NEG_INF  # identical beams at first: only one may expand
    finished = np.full((batch, beams, steps), fill, dtype=np.int64)
    finished_scores = np.full((batch, beams), NEG_INF, dtype=np.float32)
    finished_lengths = np.zeros((batch, beams), dtype=np.int64)
    is_finished = np.zeros((batch, beams), dtype=bool)
    improvable = np.ones((batch, 1), dtype=bool)
    top_beams = np.arange(keep) < beams
    eos = np.array(config.eos_token_id, dtype=np.int64)

    for step in range(steps):
        log_probs = F.log_softmax(logits.astype(paddle.float32), axis=-1)
        log_probs = _process(log_probs, history, step, config).numpy().reshape(batch, beams, vocab)
        accumulated = (log_probs + running_scores[:, :, None]).reshape(batch, beams * vocab)
        if config.do_sample:
            probs = F.softmax(paddle.to_tensor(accumulated), axis=-1)
            candidates = paddle.multinomial(probs, keep).numpy()
        else:
            candidates = np.argsort(-accumulated, axis=1, kind="stable")[:, :keep]
        cand_scores = np.take_along_axis(accumulated, candidates, axis=1)
        cand_parent, cand_token = candidates // vocab, candidates % vocab
        cand_seqs = np.take_along_axis(running, cand_parent[:, :, None], axis=1).copy()
        cand_seqs[:, :, step] = cand_token
        hits = np.isin(cand_token, eos) | (step + 1 == steps)

        # beams that go on: the best candidates that did not stop
        go_on = np.argsort(-(cand_scores + hits * NEG_INF), axis=1, kind="stable")[:, :beams]
        running = np.take_along_axis(cand_seqs, go_on[:, :, None], axis=1)
        running_scores = np.take_along_axis(cand_scores + hits * NEG_INF, go_on, axis=1)
        parents = np.take_along_axis(cand_parent, go_on, axis=1)

        # beams that end here: among the top num_beams candidates, scored with the length penalty
        just_finished = hits & top_beams[None, :]
        scored = cand_scores / float(step + 1) ** config.length_penalty
        scored = scored + (is_finished.all(axis=1, keepdims=True) & config.early_stopping) * NEG_INF
        scored = scored + (~improvable) * NEG_INF + (~just_finished) * NEG_INF
        merged_scores = np.concatenate([finished_scores, scored], axis=1)
        best = np.argsort(-merged_scores, axis=1, kind="stable")[:, :beams]
        finished = np.take_along_axis(np.concatenate([finished, cand_seqs], axis=1), best[:, :, None], axis=1)
        finished_scores = np.take_along_axis(merged_scores, best, axis=1)
        lengths = np.concatenate([finished_lengths, np.full(cand_scores.shape, step + 1)], axis=1)
        finished_lengths = np.take_along_axis(lengths, best, axis=1)
        is_finished = np.take_along_axis(np.concatenate([is_finished, just_finished], axis=1), best, axis=1)

        # can a running beam still beat the worst finished one?
        best_running = running_scores[:, :1] / float(step + 1) ** config.length_penalty
        worst_finished = np.where(is_finished, finished_scores.min(axis=1, keepdims=True), NEG_INF)
        improvable = improvable & (best_running > worst_finished).any(axis=1, keepdims=True)
        if not improvable.any() or (is_finished.all() and config.early_stopping) or hits.all():
            break

        flat_parents = paddle.to_tensor((parents + np.arange(batch)[:, None] * beams).reshape(-1))
        stepper.select(flat_parents)
        next_tokens = paddle.to_tensor(running[:, :, step].reshape(-1))
        history = paddle.concat([paddle.index_select(history, flat_parents, axis=0), next_tokens.unsqueeze(1)], axis=1)
        logits = stepper.next(next_tokens)

    keep_n = config.num_return_sequences
    sequences = finished[:, :keep_n].reshape(batch * keep_n, steps)
    length = int(finished_lengths[:, :keep_n].max())
    return paddle.to_tensor(sequences[:, :length])
