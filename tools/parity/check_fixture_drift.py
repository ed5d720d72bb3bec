"""Compare freshly made parity fixtures with the committed copies; exit 1 if they drifted.

    python tools/parity/check_fixture_drift.py DIR           # DIR written by make_fixtures.py --out DIR
    python tools/parity/check_fixture_drift.py DIR --update  # then copy the drifted files over the committed ones

`nox -s parity` runs it after the live parity tests. Arrays (safetensors, the torch .pth) must have the same
names, dtypes and shapes, integers equal and floats within RTOL/ATOL: the same seeds on another CPU may round
the last bits differently, anything more is a change of the reference. JSON files (configs, with the
transformers version that made them) must be equal. Needs torch to read the .pth: run it with the reference
venv's python.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
# make_fixtures.py's subdirectory -> where the tests read the committed copy
HOMES = {
    "vision": ROOT / "packages/eva-vit/tests/fixtures",
    "qformer": ROOT / "packages/qformer/tests/fixtures",
    "stage1": ROOT / "packages/blip2-core/tests/fixtures/stage1",
    "opt": ROOT / "packages/blip2-core/tests/fixtures/opt",
    "t5": ROOT / "packages/blip2-core/tests/fixtures/t5",
    "instructblip": ROOT / "packages/instructblip/tests/fixtures",
}
FIXTURE_SUFFIXES = (".safetensors", ".pth", ".json")
# The parity tests' own tolerance: a difference below it cannot change what they conclude.
RTOL = 1e-4
ATOL = 1e-4


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        return load_file(str(path))
    import torch

    saved = torch.load(path, map_location="cpu", weights_only=True)
    state = saved.get("model", saved)  # LAVIS wraps its state dict
    return {k: v.numpy() for k, v in state.items()}


def some(names: set[str], count: int = 5) -> str:
    listed = sorted(names)
    return f"{listed[:count]}{' ...' if len(listed) > count else ''} ({len(listed)})"


def compare_arrays(new: dict[str, np.ndarray], old: dict[str, np.ndarray]) -> list[str]:
    problems = []
    if set(new) != set(old):
        problems.append(f"keys added {some(set(new) - set(old))}, removed {some(set(old) - set(new))}")
    for key in sorted(set(new) & set(old)):
        a, b = new[key], old[key]
        if a.dtype != b.dtype or a.shape != b.shape:
            problems.append(f"{key}: {a.dtype}{list(a.shape)} vs committed {b.dtype}{list(b.shape)}")
        elif np.issubdtype(a.dtype, np.floating):
            if not np.allclose(a, b, rtol=RTOL, atol=ATOL):
                worst = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))
                problems.append(f"{key}: values differ (max abs {worst:.3g})")
        elif not np.array_equal(a, b):
            problems.append(f"{key}: values differ")
    return problems


def compare_file(new: Path, old: Path) -> list[str]:
    if new.suffix == ".json":
        a, b = json.loads(new.read_text()), json.loads(old.read_text())
        if a == b:
            return []
        changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k)) if isinstance(a, dict) else []
        return [f"differs in {changed}" if changed else "differs"]
    return compare_arrays(read_arrays(new), read_arrays(old))


def fixture_files(directory: Path) -> set[Path]:
    return {p.relative_to(directory) for p in directory.rglob("*") if p.is_file() and p.suffix in FIXTURE_SUFFIXES}


def check(fresh: Path) -> dict[tuple[str, Path], list[str]]:
    """The drifted files, (make_fixtures.py subdirectory, relative path) -> what differs."""
    drift = {}
    for name, home in HOMES.items():
        made, committed = fixture_files(fresh / name), fixture_files(home) if home.exists() else set()
        for rel in sorted(made | committed):
            if rel not in committed:
                problems = ["new, not committed"]
            elif rel not in made:
                problems = ["committed but no longer made"]
            else:
                problems = compare_file(fresh / name / rel, home / rel)
            if problems:
                drift[name, rel] = problems
    return drift


def update(fresh: Path, drift: dict[tuple[str, Path], list[str]]) -> None:
    """Copy the drifted files over the committed ones (files within tolerance stay, so git sees no churn)."""
    for name, rel in drift:
        if (fresh / name / rel).exists():
            (HOMES[name] / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(fresh / name / rel, HOMES[name] / rel)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("fresh", type=Path, help="the directory make_fixtures.py wrote")
    parser.add_argument("--update", action="store_true", help="copy the drifted fixtures over the committed ones")
    args = parser.parse_args()
    drift = check(args.fresh)
    for (name, rel), problems in drift.items():
        for problem in problems:
            print(f"fixture drift: {name}/{rel}: {problem}")
    if args.update:
        update(args.fresh, drift)
        print(f"{len(drift)} committed fixture file(s) updated from {args.fresh}")
        return 0
    if drift:
        print(
            f"{len(drift)} fixture file(s) differ from the committed copies beyond rtol={RTOL}, atol={ATOL}; "
            "if the change is intended, refresh them with --update and commit"
        )
        return 1
    print(f"fixtures: the regenerated ones match the committed copies (rtol={RTOL}, atol={ATOL})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
