"""Integrations of pyraftlog with Raft libraries.

- :mod:`pyraftlog.contrib.pysyncobj`: a PySyncObj journal that keeps every
  ``SyncObj`` of a process as one group of a shared :class:`pyraftlog.Engine`.

The 3-process PySyncObj cluster demo (``make demo``) is not part of the
package: it is an example application, examples/pysyncobj_demo in the repository.
"""
