"""The decoding loop on a toy language model whose best sequences can be enumerated."""

import itertools

import numpy as np
import paddle
import pytest

from blip2_core.model.generation import GenerationConfig, generate

VOCAB = 5
EOS = 4
PAD = 0


class MarkovStepper:
    """Next-token logits depend only on the previous token (row-specific start token): a table lookup."""

    def __init__(self, table: np.ndarray, starts: list[int]) -> None:
        self.table, self.starts = table, np.array(starts)
        self.last: np.ndarray | None = None
        self.calls = 0

    def start(self, rows):
        self.last = self.starts[rows.numpy()]
        return self._logits()

    def select(self, rows):
        self.last = self.last[rows.numpy()]

    def next(self, tokens):
        self.calls += 1
        self.last = tokens.numpy()
        return self._logits()

    def _logits(self):
        return paddle.to_tensor(self.table[self.last])


def table(seed=0):
    rng = np.random.RandomState(seed)
    return (rng.randn(VOCAB, VOCAB) * 2).astype("float32")


def log_probs(t):
    return t - np.log(np.exp(t).sum(-1, keepdims=True))


def test_greedy_follows_the_argmax_chain_and_pads_after_eos():
    t = table()
    t[1] = [0, 0, 5, 0, 0]  # 1 -> 2
    t[2] = [0, 0, 0, 0, 5]  # 2 -> EOS
    t[3] = [0, 0, 0, 5, 0]  # 3 -> 3 -> 3 ...
    stepper = MarkovStepper(t, starts=[1, 3])
    out = generate(
        stepper, paddle.to_tensor([[1], [3]]), GenerationConfig(max_new_tokens=4, eos_token_id=EOS, pad_token_id=PAD)
    )
    np.testing.assert_array_equal(out.numpy(), [[2, EOS, PAD, PAD], [3, 3, 3, 3]])


def test_generation_stops_once_every_row_ended():
    t = table()
    t[1] = [0, 0, 0, 0, 5]
    stepper = MarkovStepper(t, starts=[1, 1])
    out = generate(stepper, paddle.to_tensor([[1], [1]]), GenerationConfig(max_new_tokens=10, eos_token_id=EOS))
    assert out.numpy().tolist() == [[EOS], [EOS]] and stepper.calls == 0


def test_min_new_tokens_holds_eos_back():
    t = table()
    t[1] = [0, 0, 0, 1, 5]  # EOS first, 3 second
    t[3] = [0, 0, 0, 0, 5]
    out = generate(
        MarkovStepper(t, [1]),
        paddle.to_tensor([[1]]),
        GenerationConfig(max_new_tokens=5, min_new_tokens=1, eos_token_id=EOS),
    )
    assert out.numpy().tolist() == [[3, EOS]]


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits():
    t = np.zeros((VOCAB, VOCAB), dtype="float32")
    t[1] = [0, 2.0, 1.5, -1.0, -3.0]
    cfg = GenerationConfig(max_new_tokens=1, repetition_penalty=2.0)
    # token 1 was seen: 2.0 / 2 = 1.0 < 1.5, so 2 wins
    assert generate(MarkovStepper(t, [1]), paddle.to_tensor([[1]]), cfg).numpy().tolist() == [[2]]
    t[1] = [-5, -1.0, -1.5, -3.0, -3.0]
    # token 1 seen: -1.0 * 2 = -2.0 < -1.5, so 2 wins; unseen 2 keeps -1.5
    assert generate(MarkovStepper(t, [1]), paddle.to_tensor([[1]]), cfg).numpy().tolist() == [[2]]


def test_sampling_with_top_k_1_is_greedy_and_num_return_sequences_repeats_rows():
    t = table(3)
    greedy = generate(MarkovStepper(t, [0, 2]), paddle.to_tensor([[0], [2]]), GenerationConfig(max_new_tokens=5))
    paddle.seed(0)
    sampled = generate(
        MarkovStepper(t, [0, 2]),
        paddle.to_tensor([[0], [2]]),
        GenerationConfig(max_new_tokens=5, do_sample=True, top_k=1, num_return_sequences=3),
    )
    assert sampled.shape == [6, 5]
    np.testing.assert_array_equal(sampled.numpy(), np.repeat(greedy.numpy(), 3, axis=0))


def test_sampling_follows_the_temperature_softened_distribution():
    t = np.zeros((VOCAB, VOCAB), dtype="float32")
    t[0] = [0, np.log(3.0), 0, 0, -50]  # P(1) = 3/6 at temperature 1
    paddle.seed(1)
    cfg = GenerationConfig(max_new_tokens=1, do_sample=True, num_return_sequences=2000)
    drawn = generate(MarkovStepper(t, [0]), paddle.to_tensor([[0]]), cfg).numpy().ravel()
    assert abs((drawn == 1).mean() - 0.5) < 0.04
    cfg = GenerationConfig(max_new_tokens=1, do_sample=True, num_return_sequences=2000, temperature=0.5)
    drawn = generate(MarkovStepper(t, [0]), paddle.to_tensor([[0]]), cfg).numpy().ravel()
    assert abs((drawn == 1).mean() - 9 / 12) < 0.04  # 3^2 / (3^2 + 3)


def test_top_p_keeps_the_smallest_set_above_p():
    t = np.full((VOCAB, VOCAB), -50.0, dtype="float32")
    t[0, :3] = np.log([0.6, 0.3, 0.1])
    paddle.seed(2)
    cfg = GenerationConfig(max_new_tokens=1, do_sample=True, top_p=0.8, num_return_sequences=500)
    drawn = generate(MarkovStepper(t, [0]), paddle.to_tensor([[0]]), cfg).numpy().ravel()
    assert set(drawn.tolist()) == {0, 1}  # 0.6 < 0.8 <= 0.6 + 0.3


def best_by_enumeration(t, start, steps, length_penalty):
    """HF's beam objective, exhaustively: sum of log-probs / generated_length ** length_penalty."""
    lp = log_probs(t)
    best, best_score = None, -np.inf
    for length in range(1, steps + 1):
        for seq in itertools.product(range(VOCAB), repeat=length):
            if EOS in seq[:-1] or (length < steps and seq[-1] != EOS):
                continue  # a hypothesis ends with EOS, or at the length limit
            prev, total = start, 0.0
            for token in seq:
                total += lp[prev, token]
                prev = token
            score = total / length**length_penalty
            if score > best_score:
                best, best_score = list(seq), score
    return best


@pytest.mark.parametrize("length_penalty", [1.0, -1.0, 2.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_wide_beam_finds_the_exhaustive_best(seed, length_penalty):
    t = table(seed)
    steps = 4
    cfg = GenerationConfig(
        max_new_tokens=steps, num_beams=VOCAB**2, eos_token_id=EOS, pad_token_id=PAD, length_penalty=length_penalty
    )
    out = generate(MarkovStepper(t, [1]), paddle.to_tensor([[1]]), cfg).numpy()[0].tolist()
    expected = best_by_enumeration(t, 1, steps, length_penalty)
    assert out[: len(expected)] == expected and all(x == PAD for x in out[len(expected) :])


def test_beam_returns_the_n_best_and_works_per_row():
    t = table(5)
    cfg = GenerationConfig(max_new_tokens=3, num_beams=4, num_return_sequences=2, eos_token_id=EOS)
    out = generate(MarkovStepper(t, [1, 2]), paddle.to_tensor([[1], [2]]), cfg)
    assert out.shape[0] == 4
    one = generate(MarkovStepper(t, [2]), paddle.to_tensor([[2]]), cfg)
    width = one.shape[1]
    np.testing.assert_array_equal(out.numpy()[2:, :width], one.numpy())  # row 2's beams don't depend on row 1


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(max_new_tokens=0), "max_new_tokens"),
        (dict(num_beams=2, num_return_sequences=3), "num_return_sequences"),
        (dict(num_return_sequences=2), "greedy decoding returns one"),
        (dict(temperature=0), "temperature"),
        (dict(top_p=0), "top_p"),
    ],
)
def test_invalid_settings_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        GenerationConfig(**bad)


def test_token_ids_outside_the_vocabulary_are_refused():
    cfg = GenerationConfig(max_new_tokens=2, min_new_tokens=1, eos_token_id=50118)
    with pytest.raises(ValueError, match=r"\[50118\] are outside the vocabulary of 5"):
        generate(MarkovStepper(table(), [1]), paddle.to_tensor([[1]]), cfg, vocab_size=VOCAB)
