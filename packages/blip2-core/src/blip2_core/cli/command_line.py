"""What every command-line tool of ours shares: its start-up, and errors worded with its own flags.

The libraries change no process-wide state on import (as timm and HF transformers do not): a command-line
tool owns its process, so it is the one that quiets third-party start-up noise and sets the thread count.
"""

from __future__ import annotations

import warnings

# Printed by paddle and paddlenlp on import, about nothing a user of ours can act on: ccache builds C++
# operators (we build none); setuptools' distutils shim warns when paddlenlp imports distutils.
_IMPORT_NOISE = ("No ccache found", "Setuptools is replacing distutils")


def start_command_line_tool() -> int:
    """Quiet paddle's import-time warnings and give its CPU kernels the chosen thread count; returns the count."""
    for message in _IMPORT_NOISE:
        warnings.filterwarnings("ignore", message=message)
    from blip2_eva_vit import use_all_cores

    return use_all_cores()


def error_message(error: BaseException, *, llm_flag: str | None = "--llm") -> str:
    """``error`` as a command-line user should read it: the library's hints about Python arguments become the
    tool's flags. ``llm_flag`` is None for a tool that has no way to name an LLM."""
    from ..checkpoint_io import UntrustedPickleError
    from ..loading.pretrained import NoLanguageModelError

    if isinstance(error, NoLanguageModelError):
        how = f"pass {llm_flag} NAME_OR_PATH (e.g. facebook/opt-2.7b)" if llm_flag else "name the LLM in config.json"
        return f"{error.source} names no LLM ({error.reason}): {how}"
    if isinstance(error, UntrustedPickleError):
        return (
            f"{error.path} is a pickle file from a hub, and loading a pickle from an untrusted source can run code: "
            f"pass --trust-pickle to read it (with a restricted unpickler that only rebuilds arrays), or convert "
            f"it to safetensors"
        )
    return str(error)
