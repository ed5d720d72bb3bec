"""The per-rank results files: duplicates gathered once, cut lines dropped, missing items named."""

from __future__ import annotations

import json

import pytest

from blip2_eval.distributed import Process
from blip2_eval.json_files import EvalInputError
from blip2_eval.output_files import pin_settings
from blip2_eval.shard_store import ShardStore


def test_round_robin_shards_cover_every_item_once():
    world = [Process(rank, 3) for rank in range(3)]
    owners = [[p.rank for p in world if p.owns(i)] for i in range(10)]
    assert owners == [[i % 3] for i in range(10)]


def test_duplicates_across_shards_are_gathered_once_in_dataset_order(tmp_path):
    store = ShardStore(tmp_path, "question_id")
    with store.writer(0) as w:
        w.write([{"question_id": 3, "answer": "a"}, {"question_id": 1, "answer": "b"}])
    with store.writer(1) as w:  # e.g. a rerun with another world size redid question 3
        w.write([{"question_id": 3, "answer": "a"}, {"question_id": 2, "answer": "c"}])
    assert store.gather([1, 2, 3], timeout=0) == [
        {"question_id": 1, "answer": "b"},
        {"question_id": 2, "answer": "c"},
        {"question_id": 3, "answer": "a"},
    ]


def test_a_cut_last_line_is_ignored_then_replaced(tmp_path):
    store = ShardStore(tmp_path, "image_id")
    with store.writer(0) as w:
        w.write([{"image_id": 1, "caption": "x"}])
    with open(tmp_path / "rank-000.jsonl", "a") as f:
        f.write('{"image_id": 2, "cap')
    assert store.done_keys() == {1}
    with store.writer(0) as w:
        w.write([{"image_id": 2, "caption": "y"}])
    lines = (tmp_path / "rank-000.jsonl").read_text().splitlines()
    assert [json.loads(line)["image_id"] for line in lines] == [1, 2]


def test_waiting_for_a_missing_rank_names_the_missing_items(tmp_path):
    store = ShardStore(tmp_path, "image_id")
    with store.writer(0) as w:
        w.write([{"image_id": 1, "caption": "x"}])
    with pytest.raises(TimeoutError, match=r"no result for 2 item\(s\), e.g. \[2, 3\]"):
        store.wait_for([1, 2, 3], 0.05, poll=0.01)


def test_settings_of_a_resumed_run_must_match(tmp_path):
    pin_settings(tmp_path, {"num_beams": 5, "prompt": "a photo of", "eos_token_id": (3,)})
    pin_settings(
        tmp_path, {"num_beams": 5, "prompt": "a photo of", "eos_token_id": (3,)}
    )  # a tuple reads back as a list
    with pytest.raises(EvalInputError, match=r"num_beams: 5 -> 3"):
        pin_settings(tmp_path, {"num_beams": 3, "prompt": "a photo of", "eos_token_id": (3,)})
