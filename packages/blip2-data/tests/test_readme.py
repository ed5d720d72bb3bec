"""The README's python examples run as written.

The same ten lines in eva-vit, qformer and blip2-data: each package's tests also run alone, from a copy of its
tests folder (nox -s standalone), so they cannot import a shared helper.
"""

import re
from pathlib import Path

README = Path(__file__).parent.parent / "README.md"


def test_readme_examples_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has no python example"
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})
