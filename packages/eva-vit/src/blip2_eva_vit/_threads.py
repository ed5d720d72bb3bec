"""Paddle's CPU math library runs on one thread unless told otherwise."""

import os


def use_all_cores() -> None:
    """Give paddle's CPU kernels every core, unless the user chose a count with OMP_NUM_THREADS."""
    import paddle

    threads = int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)
    paddle.base.core.set_num_threads(threads)
