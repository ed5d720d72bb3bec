"""The recipe's two lanes: results passed between them by name, a failure raised once and not left waiting, and
worker processes on one thread."""

import os
import threading
import time

import pytest

from blip2_shapes.recipe.lanes import Lanes, OtherLaneFailed


def test_a_lane_waits_for_the_others_result():
    order = []
    with Lanes() as lanes:

        def first() -> None:
            time.sleep(0.3)
            order.append("first done")
            lanes.done("value", 41)

        def second() -> None:
            order.append(("second got", lanes.wait("value") + 1))

        lanes.start(first, second)
    assert order == ["first done", ("second got", 42)]


def test_a_failure_is_raised_and_stops_the_lane_waiting_for_it():
    waited = threading.Event()
    with Lanes() as lanes:

        def failing() -> None:
            raise ValueError("stage 1 failed")

        def waiting() -> None:
            try:
                lanes.wait("never given")
            except OtherLaneFailed:
                waited.set()
                raise

        with pytest.raises(ValueError, match="stage 1 failed"):
            lanes.start(waiting, failing)
    assert waited.is_set()


def test_workers_are_other_processes_on_one_thread():
    with Lanes() as lanes:
        assert lanes.in_worker(os.getpid) != os.getpid()
        assert lanes.in_worker(os.getenv, "BLIP2_NUM_THREADS") == "1"
        assert lanes.in_worker(os.getenv, "OMP_NUM_THREADS") == "1"
