"""The README's python examples run as written, and every blip2-eval command line in it parses."""

import re
import shlex
from pathlib import Path

import pytest

from blip2_eval.cli import build_parser

README = Path(__file__).parent.parent / "README.md"


def test_readme_python_examples_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 2
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})


def command_lines():
    """Every ``blip2-eval ...`` invocation in the README, code blocks and the migration table alike."""
    text = README.read_text()
    lines = []
    for match in re.finditer(r"blip2-eval\)? (caption|vqa|retrieval|caption-score|vqa-score) ([^`\n|]*)", text):
        args = match.group(2).replace("...", "").strip()
        if args:  # "blip2-eval caption-score ..." in prose names a command without arguments
            lines.append(f"{match.group(1)} {args}")
    return lines


@pytest.mark.parametrize("line", command_lines())
def test_readme_command_lines_parse(line):
    argv = shlex.split(line)
    args = build_parser().parse_args(argv)
    assert args.command == argv[0]
