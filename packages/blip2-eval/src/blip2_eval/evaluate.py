"""``blip2-eval caption | vqa``: generate for every item (sharded over ranks, resumable), gather, score once."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

from .distributed import Process, current_process
from .eval_data import EvalDataset, eval_dataset, load_split, resolve_files, unique_by
from .output_files import METRICS_FILE, RESULTS_FILE, SHARDS_DIR, pin_settings, write_json
from .report import format_table
from .shard_store import ShardStore


def run_evaluation(args: argparse.Namespace) -> int:
    spec = eval_dataset(args.command, args.dataset)
    split = args.split or spec.split
    image_root, files = resolve_files(spec, args.data_files, split)
    dataset = load_split(spec, image_root, files, split)
    if args.command == "retrieval":
        from .retrieval_task import run_retrieval

        return run_retrieval(args, spec, dataset, files)
    return run_generation(args, spec, dataset, files)


def run_generation(args: argparse.Namespace, spec: EvalDataset, dataset: Any, files: list[str]) -> int:
    from .generation_tasks import CaptionTask, VqaTask
    from .model_io import bundle_for_run, lavis_eos_token_ids
    from .settings import settings_from_args, with_model_prompt

    process = current_process()
    bundle = bundle_for_run(args, stage1=False)
    model, tokenizer, processor = bundle.model, bundle.tokenizer, bundle.image_processor
    eos = lavis_eos_token_ids(model, tokenizer)
    settings = with_model_prompt(settings_from_args(args), spec.task, model, getattr(args, "prompt", None))
    settings = settings.for_model(spec.task, model.config.llm_type, eos, bundle.model_type)
    lemmatizer = None
    if spec.lemmatize:
        from .lemmatize import Lemmatizer

        lemmatizer = Lemmatizer()
    task = (
        CaptionTask(model, tokenizer, settings, bundle.qformer_tokenizer)
        if spec.task == "caption"
        else VqaTask(model, tokenizer, settings, lemmatizer, bundle.qformer_tokenizer)
    )
    output_dir = Path(args.output_dir)
    pin_settings(output_dir, settings_record(args, spec, files, model, processor, settings, lemmatizer))

    indices = unique_by(dataset.samples, task.key)[: args.limit]
    keys = [dataset.samples[i][task.key] for i in indices]
    store = ShardStore(output_dir / SHARDS_DIR, task.key)
    elapsed, produced = produce(store, process, dataset, indices, task, processor, args)
    if not process.is_main:
        return 0
    results = store.gather(keys, args.gather_timeout)
    write_json(output_dir / RESULTS_FILE, results)
    print(f"{len(results)} results in {output_dir / RESULTS_FILE}")
    if args.no_score:
        return 0
    from .scoring import score_results

    metrics = score_results(spec, dataset, indices, results, files, output_dir)
    metrics["run"] = {"rank0_items": produced, "rank0_seconds": round(elapsed, 2), "world_size": process.world_size}
    if lemmatizer is not None:
        metrics["lemmatizer"] = lemmatizer.description
    write_json(output_dir / METRICS_FILE, metrics)
    print(format_table(metrics))
    return 0


def produce(
    store: ShardStore, process: Process, dataset: Any, indices: list[int], task: Any, processor: Any, args: Any
) -> tuple[float, int]:
    """This rank's share of the items not done yet, written batch by batch; (seconds, items)."""
    from tqdm import tqdm

    from .batches import image_batches

    done = store.done_keys()
    mine = [i for n, i in enumerate(indices) if process.owns(n) and dataset.samples[i][task.key] not in done]
    start = time.perf_counter()
    with (
        store.writer(process.rank) as writer,
        tqdm(total=len(mine), unit="img", desc=f"{args.command} rank {process.rank}", smoothing=0.1) as bar,
    ):
        if len(done):
            bar.write(f"rank {process.rank}: resuming, {len(done)} item(s) already in {store.folder}")
        for batch in image_batches(dataset, mine, processor, args.batch_size, args.num_workers):
            records = task(batch)
            writer.write(records)
            bar.update(len(records))
    return time.perf_counter() - start, len(mine)


def settings_record(
    args: Any, spec: EvalDataset, files: list[str], model: Any, processor: Any, settings: Any, lemmatizer: Any
) -> dict[str, Any]:
    """Everything that decides the results, written beside them (and checked when a run is resumed)."""
    generation = model.generation_config
    record = {
        "task": spec.task,
        "dataset": args.dataset,
        "split": args.split or spec.split,
        "annotation_files": [str(Path(f).resolve()) for f in files],
        "model": args.model,
        "load_model_path": args.load_model_path,
        "llm": model.config.llm_type,
        "image_size": processor.config.image_size,
        "image_interpolation": processor.config.interpolation,
        "generation": dataclasses.asdict(settings),
        "model_eos_token_id": list(generation.eos_token_id),
        "pad_token_id": generation.pad_token_id,
        "left_padding": bool(model.language_model.is_decoder_only),
    }
    if spec.task == "vqa":
        record["question_processing"] = 'lower-cased, .!"()*#:;~ removed, at most 50 words (LAVIS)'
    if lemmatizer is not None:
        record["lemmatizer"] = lemmatizer.description
    return record
