"""The one error type every entry point raises for bad input.

The CLI turns a :class:`HalutError` into a single ``error: ...`` line on stderr and a
non-zero exit status; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class HalutError(ValueError):
    """Bad input, an impossible parameter set, a corrupt file or a missing tool.

    The message is one line that names what is wrong and, where it helps, what to do.
    """
