"""Print the benchmark table: ours vs HF transformers, from the JSON both sides wrote."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    work, sizes = Path(sys.argv[1]), sys.argv[2:]
    print(f"{'size':<14} {'metric':<14} {'HF torch':>10} {'ours':>10} {'ours/HF':>8}")
    for size in sizes:
        ref = json.loads((work / size / "reference.json").read_text())
        ours = json.loads((work / size / "ours.json").read_text())
        for metric in ("images_per_s", "captions_per_s"):
            print(
                f"{size:<14} {metric:<14} {ref[metric]:>10.3f} {ours[metric]:>10.3f} {ours[metric] / ref[metric]:>8.2f}"
            )
    print(
        f"(reference: {ref['framework']}, {ref['threads']} threads; ours: {ours['framework']}; "
        f"captions: greedy, {ours['new_tokens']} new tokens each, image encoding included)"
    )


if __name__ == "__main__":
    main()
