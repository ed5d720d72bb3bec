"""``Blip2Trainer``: PaddleNLP's Trainer with BLIP-2's optimizer, schedule, data order, checkpoints and checks.

Only the hooks are overridden (optimizer, scheduler, sampler, loss, saving and loading); the training loop,
logging, gradient accumulation, data parallelism and checkpoint rotation are PaddleNLP's.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

import paddle
import paddle.distributed as dist
from paddle.io import DataLoader
from paddlenlp.trainer import Trainer, TrainerCallback
from paddlenlp.trainer.trainer_utils import TrainOutput

from .checkpoint import (
    STAGING_DIR,
    ModelFiles,
    checkpoint_step,
    clear_finished,
    clear_staging,
    load_weights,
    mark_complete,
    publish,
    resumable_checkpoints,
    save_checkpoint_model,
)
from .data import GlobalBatchSampler, raise_deferred_error
from .mixture import MixedLoader, MixedSamples, build_mixed_loader
from .optimizer import build_adamw
from .schedule import WarmupCosineSchedule
from .stream import CONSUMED_LOG, StreamCallback, StreamingSamples, StreamLoader, save_data_state
from .vqa import ANSWER_WEIGHTS_KEY, weighted_answer_loss

logger = logging.getLogger(__name__)

TRAIN_LOG = "train_log.jsonl"  # one JSON line per log event (losses, learning rate, skipped samples)
LOSS_PARTS = ("loss_itc", "loss_itm", "loss_itg")


class NonFiniteLossError(RuntimeError):
    """The loss, the gradients or the trained weights became NaN or infinite; the message names the step and the
    last good checkpoint."""


def planned_steps(samples: int, args: Any) -> int:
    """The optimizer steps a run of ``args`` makes over ``samples`` (PaddleNLP's count: ``--max_steps``, else the
    epochs' full global batches)."""
    global_batch = args.per_device_train_batch_size * max(args.dataset_world_size, 1)
    per_epoch = max((samples // global_batch) // args.gradient_accumulation_steps, 1)
    return args.max_steps if args.max_steps > 0 else int(per_epoch * args.num_train_epochs)


def trim_train_log(output_dir: str | os.PathLike, step: int, name: str = TRAIN_LOG) -> None:
    """Keep the log entries of steps up to ``step``: a run resumed there (0: a fresh start) logs the later ones
    again. A line cut short by a kill is dropped."""
    path = Path(output_dir) / name
    if not path.is_file():
        return
    lines = path.read_text().splitlines()
    kept = []
    for line in lines:
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    if len(kept) != len(lines):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, path)


def _all_finite(tensors: list[paddle.Tensor]) -> paddle.Tensor:
    if not tensors:
        return paddle.to_tensor(True)
    return paddle.stack([paddle.isfinite(t).all() for t in tensors]).all()


def _outputs_as_dict(layer: Any, inputs: Any, outputs: Any) -> dict[str, paddle.Tensor]:
    """The models return dataclasses, but paddle.DataParallel looks for the loss only in tensors, lists and
    dicts (finding none, it fails in backward), so during training the trainer sees a dict."""
    return {
        f.name: getattr(outputs, f.name) for f in dataclasses.fields(outputs) if getattr(outputs, f.name) is not None
    }


class _ResumeWhereTheRunStopped(TrainerCallback):
    """Two gaps of PaddleNLP's resume, filled once the trainer state is loaded:

    - it skips the epoch's trained batches by loading them: the sampler is told to hand them over empty;
    - it restores the RNG state after the last skipped batch, so a resume exactly at an epoch's end (nothing
      skipped) never restores it: done here.
    """

    def __init__(self, trainer: Blip2Trainer) -> None:
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        checkpoint, sampler = self.trainer.resumed_from, self.trainer.train_sampler
        steps_per_epoch = self.trainer.steps_per_epoch
        if not checkpoint or not steps_per_epoch or args.ignore_data_skip:
            return
        trained_in_epoch = state.global_step % steps_per_epoch
        if trained_in_epoch == 0:
            self.trainer._load_rng_state(checkpoint)
        elif sampler is not None:
            sampler.fast_forward(
                state.global_step // steps_per_epoch, trained_in_epoch * args.gradient_accumulation_steps
            )


class Blip2Trainer(Trainer):
    """``model_kwargs`` go to every forward (stage 1: ``losses``); ``model_files``: what each checkpoint carries
    beside the weights, so that it loads as a model (tokenizers, image processor, the models it was trained from).
    A ``StreamingSamples`` train dataset (webdataset shards) is read by a ``StreamLoader``, a ``MixedSamples`` one
    (datasets mixed by ``--sampling_weights``) by a ``MixedLoader``; both resume from each rank's data state in
    the checkpoint, and ``log_consumed_samples`` logs their trained keys per step."""

    def __init__(
        self,
        *args: Any,
        model_kwargs: dict[str, Any] | None = None,
        model_files: ModelFiles | None = None,
        log_consumed_samples: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.model_kwargs = model_kwargs or {}
        self.model_files = model_files or ModelFiles()
        self.resumed_from: str | None = None
        self.steps_per_epoch: int | None = None
        self.train_sampler: GlobalBatchSampler | None = None
        self.bad_samples = 0
        self._loss_parts: dict[str, float] = {}
        self._loss_part_count = 0
        self.add_callback(_ResumeWhereTheRunStopped(self))
        self.stream: StreamLoader | MixedLoader | None = None
        if isinstance(self.train_dataset, StreamingSamples):
            self.stream = StreamLoader(
                self.train_dataset,
                self.data_collator,
                self.args.dataloader_num_workers,
                max(self.args.dataset_world_size, 1),
            )
        elif isinstance(self.train_dataset, MixedSamples):
            self.stream = build_mixed_loader(self.train_dataset, self.data_collator, self.args)
        if self.stream is not None:
            # the stream resumes from its own state: PaddleNLP's skip-by-iterating would read the steps again
            self.args.ignore_data_skip = True
            self.add_callback(StreamCallback(self, self.stream, log_consumed_samples))

    # -- optimisation -----------------------------------------------------------------------------

    def create_optimizer(self, lr_scheduler=None):
        if self.optimizer is None:
            args = self.args
            self.optimizer = build_adamw(
                self.model,
                lr_scheduler if lr_scheduler is not None else self.lr_scheduler,
                args.weight_decay,
                args.adam_beta1,
                args.adam_beta2,
                args.adam_epsilon,
                args.max_grad_norm,
                multi_precision=args.fp16_opt_level == "O2" and (args.fp16 or args.bf16),
                layer_decay=getattr(args, "lr_layer_decay", 1.0),
            )
        return self.optimizer

    def create_scheduler(self, num_training_steps: int):
        if self.lr_scheduler is None:
            args = self.args
            self.lr_scheduler = WarmupCosineSchedule(
                args.learning_rate, args.eta_min, args.warmup_steps, num_training_steps, args.warmup_start_lr
            )
        return self.lr_scheduler

    # -- data -------------------------------------------------------------------------------------

    def _get_train_sampler(self) -> GlobalBatchSampler:
        return GlobalBatchSampler(
            len(self.train_dataset),
            self.args.per_device_train_batch_size,
            max(self.args.dataset_world_size, 1),
            max(self.args.dataset_rank, 0),
            self.args.seed,
        )

    def get_train_dataloader(self) -> DataLoader | StreamLoader | MixedLoader:
        if self.stream is not None:
            return self.stream  # no length: PaddleNLP trains --max_steps over it
        self.train_sampler = self._get_train_sampler()
        loader = DataLoader(
            self.train_dataset,
            batch_sampler=self.train_sampler,
            collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers,
            return_list=True,
        )
        self.steps_per_epoch = max(len(loader) // self.args.gradient_accumulation_steps, 1)
        return loader

    # -- loss ---------------------------------------------------------------------------------------

    def compute_loss(self, model, inputs, return_outputs=False):
        raise_deferred_error(inputs)
        bad = inputs.pop("bad_samples", None)
        if bad is not None:
            self.bad_samples += int(bad.sum())
        weights = inputs.pop(ANSWER_WEIGHTS_KEY, None)
        labels = inputs.get("labels")  # also to the model: FlanT5's decoder inputs are the shifted labels
        outputs = model(**inputs, **self.model_kwargs)  # a dict while training (see _outputs_as_dict)
        if weights is not None:  # VQA fine-tuning: several answers per question, weighted
            outputs["loss"] = weighted_answer_loss(outputs["logits"], labels, weights)
        for name in LOSS_PARTS:
            if name in outputs:
                self._loss_parts[name] = self._loss_parts.get(name, 0.0) + float(outputs[name])
        self._loss_part_count += 1
        return (outputs["loss"], outputs) if return_outputs else outputs["loss"]

    def log(self, logs: dict[str, float], **kwargs: Any) -> None:
        if self._loss_part_count and "loss" in logs:
            # a step's log, made by every rank together: the parts averaged over the ranks, as PaddleNLP's loss
            names = sorted(self._loss_parts)
            parts = [self._loss_parts[name] / self._loss_part_count for name in names]
            if self.args.world_size > 1 and names:
                values = paddle.to_tensor(parts, dtype="float32")
                dist.all_reduce(values)
                parts = (values / self.args.world_size).tolist()
            logs.update({name: round(value, 6) for name, value in zip(names, parts)})
            self._loss_parts, self._loss_part_count = {}, 0
        if self.bad_samples:
            logs["skipped_bad_samples"] = self.bad_samples
        if self.args.should_save:  # PaddleNLP keeps no log history in trainer_state.json: keep one here
            os.makedirs(self.args.output_dir, exist_ok=True)
            with open(os.path.join(self.args.output_dir, TRAIN_LOG), "a") as f:
                f.write(json.dumps({"step": self.state.global_step, **logs}) + "\n")
        super().log(logs, **kwargs)

    def _check_loss_valid(self, loss: paddle.Tensor) -> None:
        """Before each update (PaddleNLP's hook, after backward): the loss, the gradients and the trained weights
        must be finite, on every rank; else every rank stops together, before the update."""
        # fp16's loss scaler expects overflowing gradients now and then: it skips those steps itself
        gradients = not self.args.fp16
        flags = self._finite_flags(loss, gradients)
        if all(flags):
            return
        problems = []
        if not flags[0]:
            problems.append(f"loss ({float(loss)})")
        if not flags[1]:
            problems.append(f"gradients ({self._non_finite_names(grads=True)})")
        if not flags[2]:
            problems.append(f"weights ({self._non_finite_names(grads=False)})")
        step = self.state.global_step + 1
        # what failed was computed from the weights after step - 1: a checkpoint of those would fail again
        raise NonFiniteLossError(
            f"non-finite {' and '.join(problems)} at optimizer step {step}: training stopped before this step's "
            f"update; {self._resume_advice(before_step=step - 1)}"
        )

    def check_finite_weights(self, what: str) -> None:
        """Refuse to save ``what`` (a checkpoint, the final model) with non-finite trained weights."""
        if self._finite_flags(None, gradients=False)[2]:
            return
        step = self.state.global_step
        raise NonFiniteLossError(
            f"non-finite weights ({self._non_finite_names(grads=False)}) after optimizer step {step}: {what} not "
            f"saved; {self._resume_advice(before_step=step)}"
        )

    def _trained(self) -> list[tuple[str, paddle.Tensor]]:
        return [(name, p) for name, p in self.model.named_parameters() if not p.stop_gradient]

    def _finite_flags(self, loss: paddle.Tensor | None, gradients: bool) -> list[bool]:
        """[loss, gradients, weights] finite, agreed over the ranks (one small all-reduce)."""
        trained = [p for _, p in self._trained()]
        checks = [
            paddle.isfinite(loss).all() if loss is not None else paddle.to_tensor(True),
            _all_finite([p.grad for p in trained if p.grad is not None]) if gradients else paddle.to_tensor(True),
            _all_finite(trained),
        ]
        flags = paddle.stack([check.astype("int32").reshape([]) for check in checks])
        if self.args.world_size > 1:  # stop every rank together, never one alone
            dist.all_reduce(flags, op=dist.ReduceOp.MIN)
        return [bool(flag) for flag in flags.tolist()]

    def _non_finite_names(self, grads: bool) -> str:
        """The parameters whose gradients (or values) are not finite on this rank, for the message."""
        names = [
            name
            for name, p in self._trained()
            if (t := p.grad if grads else p) is not None and not bool(paddle.isfinite(t).all())
        ]
        if not names:
            return "on another rank"
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        return f"{', '.join(names[:3])}{more}"

    def _resume_advice(self, before_step: int) -> str:
        good = next(resumable_checkpoints(self.args.output_dir, before_step), None)
        if good is None:
            return "no good checkpoint was saved before it (start again, e.g. with a lower --learning_rate)"
        return (
            f"the last good checkpoint is {good} (resume from it with --resume_from_checkpoint {good}, e.g. with a "
            "lower --learning_rate)"
        )

    # -- checkpoints ----------------------------------------------------------------------------------

    def planned_steps(self) -> int:
        return self.args.max_steps if self.stream is not None else planned_steps(len(self.train_dataset), self.args)

    def train(self, resume_from_checkpoint: str | None = None, **kwargs: Any):
        self.resumed_from = resume_from_checkpoint
        start = checkpoint_step(resume_from_checkpoint) if resume_from_checkpoint else 0
        planned = self.planned_steps()
        if start >= planned:
            # killed after its last checkpoint, or run again: PaddleNLP would train one more step (past
            # --max_steps); the checkpoint's weights are the run's result
            self._load_from_checkpoint(resume_from_checkpoint)
            self.state.global_step = start
            logger.info("%s is at step %d of %d: nothing left to train", resume_from_checkpoint, start, planned)
            return TrainOutput(start, 0.0, {})
        if self.args.should_save:
            clear_staging(self.args.output_dir)
            clear_finished(self.args.output_dir)  # the final model there is about to be replaced
            trim_train_log(self.args.output_dir, start)  # each step logged once
        if self.stream is not None:
            rank = max(self.args.dataset_rank, 0)
            os.makedirs(self.args.output_dir, exist_ok=True)
            trim_train_log(self.args.output_dir, start, CONSUMED_LOG.format(rank=rank))
        hook = self.model.register_forward_post_hook(_outputs_as_dict)
        try:
            return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
        finally:
            hook.remove()
            if self.stream is not None:
                self.stream.close(join=True)

    def _save(self, output_dir: str | None = None, state_dict=None, merge_tensor_parallel=False, **kwargs: Any):
        # The trained weights over the models they started from; the final model is written by save_final_model.
        output_dir = output_dir or self.args.output_dir
        if self.args.should_save:
            save_checkpoint_model(self.model, output_dir, self.model_files)

    def _save_checkpoint(self, model, metrics=None):
        """PaddleNLP's checkpoint, written under .staging and renamed into place once complete."""
        args = self.args
        name = f"checkpoint-{self.state.global_step}"
        self.check_finite_weights(name)  # a checkpoint to resume from must be one that can
        real_output, real_signal = args.output_dir, args.output_signal_dir
        staging = os.path.join(real_output, STAGING_DIR)
        args.output_dir = args.output_signal_dir = staging
        try:
            super()._save_checkpoint(model, metrics)
            if self.stream is not None:  # each rank's data position, beside its RNG state
                save_data_state(self.stream, os.path.join(staging, name), max(args.dataset_rank, 0))
        finally:
            args.output_dir, args.output_signal_dir = real_output, real_signal
        if args.world_size > 1:
            dist.barrier()  # every rank has written its part
        if args.should_save:
            mark_complete(os.path.join(staging, name), self.state.global_step)
            publish(os.path.join(staging, name), os.path.join(real_output, name))
            clear_staging(real_output)
            self._rotate_checkpoints(use_mtime=False, output_dir=real_output)
        if args.world_size > 1:
            dist.barrier()

    def _load_from_checkpoint(self, resume_from_checkpoint=None):
        if resume_from_checkpoint is None:
            return
        names = load_weights(self.model, resume_from_checkpoint, require_all_trainable=True)
        logger.info("resumed %d trainable weights from %s", len(names), resume_from_checkpoint)
