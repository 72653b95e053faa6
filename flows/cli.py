"""The ``halut`` command line: ``halut --help``.

Each command group lives in its own module and registers itself on :data:`main` (defined
with the shared error handling and :func:`emit_json` in :mod:`flows.clibase`):
``flows.cmd_model`` (learn, info, eval), ``flows.cmd_run`` (run), ``flows.cmd_layer``
(emulate, compare, demo), ``flows.cmd_net`` (the ``net`` group) and ``flows.cmd_hw`` (the
``hw`` group, with ``hw power`` and ``hw compare`` from ``flows.cmd_hwpower``). Errors that are the
user's (:class:`learning.errors.HalutError`, and as a safety net any ``OSError`` from the
file system) print one line on stderr and exit 1; ``--debug`` shows the traceback.
"""

from __future__ import annotations

from flows import (
    cmd_convergence,
    cmd_hw,
    cmd_hwpower,
    cmd_layer,
    cmd_model,
    cmd_net,
    cmd_run,
    cmd_sweep,
)
from flows.clibase import emit_json, main

for _mod in (cmd_model, cmd_run, cmd_layer, cmd_net, cmd_sweep, cmd_convergence, cmd_hw,
             cmd_hwpower):
    _mod.register(main)

__all__ = ["emit_json", "main"]
