"""The python examples run as written: the root README's "Build your own model on the shared encoder" section and
this package's README."""

import re
from pathlib import Path

ROOT_README = Path(__file__).resolve().parents[3] / "README.md"
README = Path(__file__).parent.parent / "README.md"
SECTION = "## Build your own model on the shared encoder"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_root_readme_composition_example_runs(tmp_path, monkeypatch):
    if not ROOT_README.is_file():  # an installed copy of the tests, away from the clone
        return
    text = ROOT_README.read_text()
    section = text[text.index(SECTION) :].split("\n## ", 1)[0]
    (block,) = python_blocks(section)
    monkeypatch.chdir(tmp_path)
    exec(compile(block, str(ROOT_README), "exec"), {})
    assert (tmp_path / "my-instructblip" / "config.json").is_file()


def test_package_readme_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for block in python_blocks(README.read_text()):
        exec(compile(block, str(README), "exec"), {})
