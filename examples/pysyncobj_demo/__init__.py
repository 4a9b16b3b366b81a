"""The pyraftlog + PySyncObj demo (``make demo``): a 3-process cluster, a
SIGKILL, a restart, a check.  An example application, not part of the
installed package.

Run it as a directory::

    .venv/bin/python examples/pysyncobj_demo --help

The modules: main.py (options, work directory), coordinator.py (the
scenario and its summary), cluster.py (the node processes, bounded waits),
node.py (a node: one engine, a SyncObj per group, the line protocol),
load_generator.py (the writes), verifier.py (the check of acknowledged
writes), store.py (the replicated key-value store).

Importable as ``pysyncobj_demo`` with ``examples/`` on ``sys.path`` (the
tests get it from ``pythonpath`` in pyproject.toml): the tests and
perf/bench_pysyncobj.py use the names below.
"""

from .cluster import ChildHandle, DemoError, free_ports, wait_until
from .node import Child
from .store import Store, value_for

__all__ = ["Child", "ChildHandle", "DemoError", "Store", "free_ports", "value_for", "wait_until"]
