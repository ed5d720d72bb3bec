"""Runs ``python -m blip2_train`` with one fault injected, for the fault tests (a real process, a real fault).

usage: python inject.py MODE ARGS...   MODE: kill-during-save:STEP | nan-loss-at:STEP
"""

import os
import signal
import sys

import paddle

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


if __name__ == "__main__":
    mode, value = sys.argv[1].split(":")
    {"kill-during-save": kill_during_save, "nan-loss-at": nan_loss_at}[mode](int(value))
    raise SystemExit(main(sys.argv[2:]))
