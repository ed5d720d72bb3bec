"""One thread-count decision per process, whatever is imported first, and none on import.

Each case runs in a fresh interpreter with the real paddle and reads the OpenMP thread count paddle's CPU
kernels run with (``omp_get_max_threads`` of the libiomp5 that paddle ships).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

CORES = len(os.sched_getaffinity(0))

PROBE = """
import ctypes, glob, json, os, warnings
warnings.simplefilter("ignore")
{imports}
import paddle
omp = ctypes.CDLL(glob.glob(os.path.join(os.path.dirname(paddle.__file__), "libs", "libiomp5.so"))[0])
after_import = omp.omp_get_max_threads()
chosen = [{calls}]
print(json.dumps({{"after_import": after_import, "chosen": chosen, "omp": omp.omp_get_max_threads()}}))
"""

IMPORT_ORDERS = {
    "eva-vit alone": ("import blip2_eva_vit", "blip2_eva_vit.use_all_cores()"),
    "qformer alone": ("import blip2_qformer", "blip2_qformer.use_all_cores()"),
    # blip2-core imports eva-vit and then the Q-Former (which used to reset the count to every core)
    "core": (
        "import blip2_core.model.modeling, blip2_eva_vit, blip2_qformer",
        "blip2_eva_vit.use_all_cores(), blip2_qformer.use_all_cores()",
    ),
    "paddle first": (
        "import paddle; import blip2_qformer, blip2_eva_vit",
        "blip2_qformer.use_all_cores(), blip2_eva_vit.use_all_cores()",
    ),
    "command-line start-up": (
        "import blip2_core.cli.command_line",
        "blip2_core.cli.command_line.start_command_line_tool()",
    ),
}


def probe(order: str, **env: str) -> dict:
    imports, calls = IMPORT_ORDERS[order]
    environ = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "BLIP2_NUM_THREADS")}
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(imports=imports, calls=calls)],
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("order", IMPORT_ORDERS)
def test_the_user_omp_num_threads_is_honoured_in_every_import_order(order):
    out = probe(order, OMP_NUM_THREADS="3")
    assert out["after_import"] == 3  # OpenMP reads the variable itself; importing ours must not undo that
    assert out["chosen"] == [3] * len(out["chosen"]) and out["omp"] == 3


@pytest.mark.parametrize("order", ["core", "paddle first"])
def test_blip2_num_threads_wins_over_omp_num_threads(order):
    out = probe(order, OMP_NUM_THREADS="3", BLIP2_NUM_THREADS="2")
    assert out["chosen"] == [2, 2] and out["omp"] == 2


@pytest.mark.parametrize("order", ["core", "paddle first"])
def test_without_a_choice_every_core_is_used(order):
    # paddle's import writes OMP_NUM_THREADS=1: that is not the user's choice
    out = probe(order)
    assert out["after_import"] == 1  # importing our libraries changes nothing: paddle's own default stays
    assert out["chosen"] == [CORES, CORES] and out["omp"] == CORES
