"""One thread-count decision per process, whatever is imported first, and none on import.

Each case runs in a fresh interpreter with the real paddle and reads the OpenMP thread count paddle's CPU
kernels run with (``omp_get_max_threads`` of the libiomp5 that paddle ships).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import blip2_eva_vit
import blip2_qformer

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
        "import blip2_core.modeling, blip2_eva_vit, blip2_qformer",
        "blip2_eva_vit.use_all_cores(), blip2_qformer.use_all_cores()",
    ),
    "paddle first": (
        "import paddle; import blip2_qformer, blip2_eva_vit",
        "blip2_qformer.use_all_cores(), blip2_eva_vit.use_all_cores()",
    ),
    "command-line start-up": (
        "import blip2_core.command_line",
        "blip2_core.command_line.start_command_line_tool()",
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


def test_a_bad_thread_count_is_named():
    with pytest.raises(ValueError, match="must be a whole number, got 'three'"):
        blip2_eva_vit._shared.thread_count({"BLIP2_NUM_THREADS": "three"})


def test_the_two_copies_of_the_shared_module_are_the_same():
    # blip2-eva-vit and blip2-qformer each install alone, so each carries this file
    copies = [Path(m.__file__).with_name("_shared.py").read_text() for m in (blip2_eva_vit, blip2_qformer)]
    assert copies[0] == copies[1]


MKL_PROBE = """
import os, warnings
warnings.simplefilter("ignore")
import blip2_qformer
blip2_qformer.use_all_cores()
print(os.environ.get("MKL_DEBUG_CPU_TYPE"))
"""


@pytest.mark.skipif(blip2_eva_vit._shared.cpu_vendor() != "AuthenticAMD", reason="MKL's AMD path is set on AMD only")
@pytest.mark.parametrize(("user_value", "expected"), [(None, "5"), ("4", "4")])
def test_mkl_is_told_the_amd_cpu_unless_the_user_said_otherwise(user_value, expected):
    environ = {k: v for k, v in os.environ.items() if k != "MKL_DEBUG_CPU_TYPE"}
    if user_value is not None:
        environ["MKL_DEBUG_CPU_TYPE"] = user_value
    result = subprocess.run([sys.executable, "-c", MKL_PROBE], env=environ, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == expected


def test_cpu_vendor_agrees_with_lscpu():
    lscpu = shutil.which("lscpu")
    if lscpu is None:
        pytest.skip("no lscpu to compare with")
    lines = subprocess.run([lscpu], capture_output=True, text=True, check=True).stdout.splitlines()
    (vendor,) = [line.partition(":")[2].strip() for line in lines if line.startswith("Vendor ID:")]
    assert blip2_eva_vit._shared.cpu_vendor() == vendor
