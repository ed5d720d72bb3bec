"""The weights live in this package's wheel and in no other: blip2-core's wheel carries none, and this one carries
every file of the model folder (a package-data glob that missed one would break blip2-predict after pip install)."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

PACKAGES = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheels")
    for name in ("blip2-core", "blip2-shapes"):
        if not (PACKAGES / name / "pyproject.toml").is_file():
            pytest.skip("needs a clone of the repository")
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
             str(PACKAGES / name)],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
    return {path.name.split("-")[0]: zipfile.ZipFile(path).namelist() for path in out.glob("*.whl")}


def test_blip2_core_wheel_carries_no_weights(wheels):
    core = wheels["blip2_core"]
    assert any(name.endswith("loading/default_model.py") for name in core)
    assert not [name for name in core if name.endswith((".safetensors", ".pdparams", ".pth", ".bin"))]


def test_the_shapes_wheel_carries_every_file_of_the_model(wheels):
    from blip2_shapes import MODEL_DIRECTORY

    in_wheel = {name for name in wheels["blip2_shapes"] if name.startswith("blip2_shapes/model/")}
    on_disk = {f"blip2_shapes/model/{path.relative_to(MODEL_DIRECTORY).as_posix()}"
               for path in MODEL_DIRECTORY.rglob("*") if path.is_file()}  # fmt: skip
    assert on_disk and in_wheel == on_disk
