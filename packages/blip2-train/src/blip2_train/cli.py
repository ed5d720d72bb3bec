"""``blip2-train stage1|stage2 [options]``: BLIP-2 pre-training on PaddleNLP's Trainer (one process or many).

Several processes: ``python -m paddle.distributed.launch --nproc_per_node N $(which blip2-train) stage1 ...``
(fleetrun is the same launcher); on CPU add ``--backend gloo``.
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import sys
from collections.abc import Sequence

logger = logging.getLogger("blip2_train")

USAGE = (
    "usage: blip2-train {stage1,stage2,finetune-caption,finetune-retrieval,finetune-vqa,finetune-instruct,"
    "cache-features} "
    "[--help] [options]"
)
CACHE_FEATURES = "cache-features"


class StartupError(SystemExit):
    """A configuration that cannot run here, reported before any model is loaded."""


class RunError(SystemExit):
    """A run stopped by its data (a bad annotation row or sample) or its numbers (non-finite values): one message
    that says what to do, without a traceback."""


def command_line_message(error: BaseException) -> str:
    """The library's message with its Python options named as this command's flags."""
    from blip2_data.errors import DATA_FILES_OPTION, SKIP_BAD_SAMPLES_OPTION

    message = str(error).replace(SKIP_BAD_SAMPLES_OPTION, "--skip_bad_samples")
    return message.replace(DATA_FILES_OPTION, "--data_files IMAGE_ROOT,ANNOTATION_JSON")


def check_device(argv: Sequence[str]) -> None:
    """Refuse, at start-up, what needs a GPU on a machine without one (and what this model cannot do at all)."""
    peek = argparse.ArgumentParser(add_help=False)
    for flag in ("--fp16", "--bf16"):
        peek.add_argument(flag, nargs="?", const="true", default="false")
    peek.add_argument("--sharding", default="")
    for flag in ("--tensor_parallel_degree", "--sharding_parallel_degree", "--pipeline_parallel_degree"):
        peek.add_argument(flag, type=int, default=1)
    known, _ = peek.parse_known_args(list(argv))
    import paddle

    if known.tensor_parallel_degree > 1 or known.pipeline_parallel_degree > 1:
        raise StartupError(
            "blip2-train: --tensor_parallel_degree / --pipeline_parallel_degree > 1 are not supported: the ViT, "
            "Q-Former and LLM wrapper have no tensor- or pipeline-parallel layers. Use data parallelism, with "
            "--sharding stage1/stage2 on GPUs to split optimizer state."
        )
    wants = []
    if known.fp16.lower() in ("true", "1", "yes"):
        wants.append("--fp16")
    if known.bf16.lower() in ("true", "1", "yes"):
        wants.append("--bf16")
    if known.sharding or known.sharding_parallel_degree > 1:
        wants.append("--sharding / --sharding_parallel_degree")
    if wants and not paddle.device.is_compiled_with_cuda():
        raise StartupError(
            f"blip2-train: {', '.join(wants)} need a GPU build of paddle (paddlepaddle-gpu) and GPUs; this paddle "
            "is CPU-only, where training runs in float32 with data parallelism over gloo. Drop these flags."
        )


def parse(stage: str, argv: Sequence[str]):
    from paddlenlp.trainer import PdArgumentParser

    from .arguments import DATA_ARGUMENTS, MODEL_ARGUMENTS, TRAINING_ARGUMENTS, DataArguments, ModelArguments
    from .paddlemix_names import PaddleMixArguments, apply_paddlemix_names

    parser = PdArgumentParser(
        (
            MODEL_ARGUMENTS.get(stage, ModelArguments),
            DATA_ARGUMENTS.get(stage, DataArguments),
            TRAINING_ARGUMENTS[stage],
            PaddleMixArguments,
        )
    )
    parser.prog = f"blip2-train {stage}"
    model_args, data_args, training_args, paddlemix_names = parser.parse_args_into_dataclasses(args=list(argv))
    apply_paddlemix_names(paddlemix_names, model_args, data_args, parser.prog)
    return model_args, data_args, training_args


def main(argv: Sequence[str] | None = None) -> int:
    from blip2_core.cli.command_line import start_command_line_tool

    start_command_line_tool()  # threads, MKL's AMD path, and quiet imports: before paddle(nlp) is imported
    from .arguments import STAGES

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == CACHE_FEATURES:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        from .cache_features import main as cache_features

        return cache_features(argv[1:])
    if not argv or argv[0] not in STAGES:
        print(USAGE, file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    stage, rest = argv[0], argv[1:]
    import paddle

    from .precision import with_default_mixed_precision

    rest = with_default_mixed_precision(rest, on_gpu=paddle.device.is_compiled_with_cuda())
    check_device(rest)
    model_args, data_args, training_args = parse(stage, rest)
    if data_args.feature_cache and not model_args.freeze_vit:
        raise StartupError(
            f"blip2-train {stage}: --feature_cache holds the features of a frozen vision encoder, but this run "
            "trains the ViT (--freeze_vit false): pass --freeze_vit true to train from the cache, or drop "
            "--feature_cache"
        )
    if training_args.do_eval or training_args.eval_steps:
        raise StartupError(
            f"blip2-train {stage}: --do_eval / --eval_steps: evaluation during training is not supported here; "
            "evaluate the model this run writes (or any checkpoint-N) with blip2-eval caption / vqa / retrieval"
        )
    from blip2_data import BadSampleError, DatasetError, DatasetNotAvailableError

    from .feature_cache import FeatureCacheError
    from .run import run
    from .trainer import NonFiniteLossError

    try:
        run(stage, model_args, data_args, training_args)
    except FeatureCacheError as error:  # the user's cache does not fit the run: the message says it all
        raise StartupError(f"blip2-train {stage}: {error}") from error
    except (BadSampleError, DatasetError, DatasetNotAvailableError, NonFiniteLossError) as error:
        raise RunError(f"blip2-train {stage}: {command_line_message(error)}") from error
    if paddle.distributed.get_world_size() > 1:
        leave_now()
    return 0


def leave_now() -> None:
    """End a rank of a multi-process run that has finished (every rank past the final barrier, the model and its
    marker written): run the exit hooks (paddle's shared-memory cleanup, logging's flush), then exit without the
    interpreter's native teardown. Once in CI (2026-12-07) rank 0 of a finished gloo run ended with a non-zero code
    and no message after the final barrier, and the launcher reported the run failed; the cause was not found, and
    the native teardown (gloo's store, paddle's loader threads) is what is left to run there. A script waiting on
    the launcher must see the success."""
    atexit._run_exitfuncs()  # what a normal exit runs first; private but stable since Python 3.0
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(0)


if __name__ == "__main__":
    raise SystemExit(main())
