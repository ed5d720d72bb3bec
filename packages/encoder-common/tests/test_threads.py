"""Paddle's CPU thread count: the user's choice as they made it, whatever paddle's import wrote, and MKL's AMD path.

The import-order cases run in a fresh interpreter each, with the real paddle.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from blip2_encoder_common import cpu_vendor, thread_count

CORES = len(os.sched_getaffinity(0))


def run_python(code: str, **env: str | None) -> str:
    """The last line ``code`` prints in a fresh interpreter, with ``env`` set (None: unset) over this one's."""
    environ = {**os.environ, **env}
    environ = {key: value for key, value in environ.items() if value is not None}
    result = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_thread_count_prefers_explicit_choices_over_all_cores():
    assert thread_count({"BLIP2_NUM_THREADS": "3"}, user_omp_threads="5") == 3
    assert thread_count({}, user_omp_threads="5") == 5
    assert thread_count({}, user_omp_threads=None) == CORES
    # paddle's own OMP_NUM_THREADS=1 (set when it is imported) is not a user choice: only what was read before counts
    assert thread_count({"OMP_NUM_THREADS": "1"}, user_omp_threads=None) == CORES


def test_a_bad_thread_count_is_named():
    with pytest.raises(ValueError, match="must be a whole number, got 'three'"):
        thread_count({"BLIP2_NUM_THREADS": "three"})


PROBE = """
import json, os, sys, warnings
warnings.simplefilter("ignore")
{imports}
import paddle
came_first = blip2_encoder_common.threads._PADDLE_CAME_FIRST
print(json.dumps({{"paddle_came_first": came_first, "threads": blip2_encoder_common.use_all_cores()}}))
"""
IMPORTS = {"ours first": "import blip2_encoder_common", "paddle first": "import paddle; import blip2_encoder_common"}


@pytest.mark.parametrize("order", IMPORTS)
@pytest.mark.parametrize(("omp", "expected"), [("3", 3), (None, CORES)])
def test_omp_num_threads_is_read_as_the_user_set_it(order, omp, expected):
    out = json.loads(run_python(PROBE.format(imports=IMPORTS[order]), OMP_NUM_THREADS=omp, BLIP2_NUM_THREADS=None))
    # Importing the package reads the variable before anything of ours imports paddle (which writes "1" where it
    # is unset); only where the user imported paddle first is the starting environment asked instead.
    assert out["paddle_came_first"] == (order == "paddle first")
    assert out["threads"] == expected


MKL_PROBE = """
import os, warnings
warnings.simplefilter("ignore")
import blip2_encoder_common
blip2_encoder_common.use_all_cores()
print(os.environ.get("MKL_DEBUG_CPU_TYPE"))
"""


@pytest.mark.skipif(cpu_vendor() != "AuthenticAMD", reason="MKL's AMD path is set on AMD only")
@pytest.mark.parametrize(("user_value", "expected"), [(None, "5"), ("4", "4")])
def test_mkl_is_told_the_amd_cpu_unless_the_user_said_otherwise(user_value, expected):
    assert run_python(MKL_PROBE, MKL_DEBUG_CPU_TYPE=user_value) == expected


def test_cpu_vendor_agrees_with_lscpu():
    lscpu = shutil.which("lscpu")
    if lscpu is None:
        pytest.skip("no lscpu to compare with")
    lines = subprocess.run([lscpu], capture_output=True, text=True, check=True).stdout.splitlines()
    (vendor,) = [line.partition(":")[2].strip() for line in lines if line.startswith("Vendor ID:")]
    assert cpu_vendor() == vendor
