"""cfgctl commands of the memory fallback (entry point ``cfgctl-memory``, group ``cfgstore``).

This module only registers them (the ``cfgctl_register_commands`` hook); each command's
contract is in its own module:

* ``cfgctl journal list`` and ``cfgctl journal replay``: :mod:`cfgstore_memory.journal_cmd`
  (outage journals left behind by instances: list them read-only, replay orphaned ones
  onto Redis);
* ``cfgctl restore``: :mod:`cfgstore_memory.restore_cmd` (re-seed an emptied Redis
  namespace from a snapshot file).

Exit codes as everywhere in cfgctl: 0 done, 1 refused, 2 unusable input or storage.
"""

from __future__ import annotations

import typer

from cfgstore import hookimpl
from cfgstore_memory import journal_cmd, restore_cmd


@hookimpl
def cfgctl_register_commands(app: typer.Typer) -> None:
    """Add ``cfgctl journal list|replay`` and ``cfgctl restore``."""
    journal_cmd.register(app)
    restore_cmd.register(app)
