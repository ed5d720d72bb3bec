"""Runs ``python -m blip2_train`` with one fault injected, for the fault tests (a real process, a real fault).

usage: python inject.py MODE ARGS...   MODE: kill-during-save:STEP | nan-loss-at:STEP | nan-weights-after:STEP
"""

import os
import signal
import sys

import paddle
from paddlenlp.trainer import TrainerCallback

from blip2_train.cli import main
from blip2_train.trainer import Blip2Trainer


def kill_during_save(step: int) -> None:
    real_save = paddle.save

    def save(obj, path, *args, **kwargs):
        if f"checkpoint-{step}" in str(path) and str(path).endswith("optimizer.pdopt"):
            os.kill(os.getpid(), signal.SIGKILL)  # the weights are written, the optimizer is not
        return real_save(obj, path, *args, **kwargs)

    paddle.save = save


def nan_loss_at(step: int) -> None:
    real = Blip2Trainer.compute_loss

    def compute_loss(self, model, inputs, return_outputs=False):
        loss = real(self, model, inputs, return_outputs)
        if self.state.global_step + 1 == step:
            loss = loss * float("nan")
        return loss

    Blip2Trainer.compute_loss = compute_loss


def nan_weights_after(step: int) -> None:
    """One trained weight becomes NaN after optimizer step ``step`` (an update that overflowed)."""
    real_init = Blip2Trainer.__init__

    class Poison(TrainerCallback):
        def __init__(self, trainer):
            self.trainer = trainer

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == step:
                param = next(p for p in self.trainer.model.parameters() if not p.stop_gradient)
                with paddle.no_grad():
                    param.set_value(paddle.full_like(param, float("nan")))

    def __init__(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        self.add_callback(Poison(self))

    Blip2Trainer.__init__ = __init__


if __name__ == "__main__":
    mode, value = sys.argv[1].split(":")
    faults = {"kill-during-save": kill_during_save, "nan-loss-at": nan_loss_at, "nan-weights-after": nan_weights_after}
    faults[mode](int(value))
    raise SystemExit(main(sys.argv[2:]))
