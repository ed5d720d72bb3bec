"""What every command-line tool of ours does first, before paddle is imported.

The libraries change no process-wide state on import (as timm and HF transformers do not): a command-line
tool owns its process, so it is the one that quiets paddle's build-tool warning and sets the thread count.
"""

from __future__ import annotations

import warnings


def start_command_line_tool() -> int:
    """Quiet paddle's ccache warning and give its CPU kernels the chosen thread count; returns the count."""
    # paddle warns on import that ccache (a C++ build cache for custom operators) is missing: nothing here builds
    # C++, so the warning only hides the tool's own output.
    warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning)
    from blip2_eva_vit import use_all_cores

    return use_all_cores()
