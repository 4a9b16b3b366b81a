"""Integrations of pyraftlog with Raft libraries.

- :mod:`pyraftlog.contrib.pysyncobj`: a PySyncObj journal that keeps every
  ``SyncObj`` of a process as one group of a shared :class:`pyraftlog.Engine`.
- ``python -m pyraftlog.contrib.demo``: a 3-process PySyncObj cluster demo.
"""
