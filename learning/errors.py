"""The one error type every entry point raises for bad input.

The CLI turns a :class:`HalutError` into a single ``error: ...`` line on stderr and a
non-zero exit status; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class HalutError(ValueError):
    """Bad input, an impossible parameter set, a corrupt file or a missing tool.

    The message is one line that names what is wrong and, where it helps, what to do.
    """


def one_line(exc: BaseException, limit: int = 300) -> str:
    """``ExcType: first line of the message``, at most ``limit`` characters of it: a foreign
    exception (an import, a parser, a user's factory) told in one line of a HalutError."""
    lines = [s.strip() for s in str(exc).splitlines() if s.strip()]
    text = lines[0] if lines else ""
    if len(text) > limit:
        text = text[:limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
