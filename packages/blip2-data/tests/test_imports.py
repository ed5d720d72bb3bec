"""What importing blip2-data costs: paddle only for the datasets and the DataLoader, and a clear error without it."""

import subprocess
import sys

import pytest

import blip2_data

NEEDS_PADDLE = [
    "Blip2DataLoader",
    "Blip2Dataset",
    "Blip2WebDataset",
    "ConcatDataset",
    "concat_datasets",
    "load_dataset",
]
# The rest must work where paddle is missing or slow to import: blip2-core's downloader, the CLIs' --help.
PADDLE_FREE = sorted(set(blip2_data.__all__) - set(NEEDS_PADDLE))


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_every_public_name_resolves():
    assert set(NEEDS_PADDLE) <= set(blip2_data.__all__)
    assert all(getattr(blip2_data, name) is not None for name in blip2_data.__all__)
    assert set(blip2_data.__all__) <= set(dir(blip2_data))


def test_the_package_and_its_paddle_free_names_do_not_import_paddle():
    names = ", ".join(PADDLE_FREE)
    done = run(
        f"import sys, blip2_data; from blip2_data import {names}\n"
        "from blip2_data.download import blip2_home, datasets_home\n"
        "assert 'paddle' not in sys.modules, 'paddle was imported'"
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("name", NEEDS_PADDLE)
def test_a_missing_paddle_says_what_to_install_when_a_name_needs_it(name):
    done = run(
        "import sys; sys.modules['paddle'] = None  # as if paddle were not installed\n"
        "import blip2_data; from blip2_data import blip2_home, pre_question\n"
        f"from blip2_data import {name}"
    )
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ModuleNotFoundError: blip2-data needs PaddlePaddle, which is not installed:")
    assert "pip install 'blip2-data[cpu]'" in last and "paddlepaddle-gpu" in last


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'nothing_here'"):
        blip2_data.nothing_here  # noqa: B018
    with pytest.raises(ImportError):
        exec("from blip2_data import nothing_here", {})


def test_names_that_moved_out_of_datasets_still_import_from_there():
    # blip2-eval imports these from blip2_data.datasets.
    from blip2_data import dataset_sources, datasets, load, prepare

    assert datasets.EVAL_SOURCES is dataset_sources.EVAL_SOURCES
    assert datasets.fetch_eval_files is prepare.fetch_eval_files
    assert datasets.load_eval_dataset is load.load_eval_dataset
