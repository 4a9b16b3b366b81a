"""Shared fixtures: a fresh directory and an ``open_log`` factory."""

import pytest

import pyraftlog


@pytest.fixture
def log_dir(tmp_path):
    """A path (not yet created) for a fresh log directory."""
    return tmp_path / "log"


@pytest.fixture
def open_log(log_dir):
    """``open_log(path=log_dir, **opts)`` opens an engine (``sync=False`` by
    default); every engine it opened is closed at teardown."""
    opened = []

    def _open(path=None, **opts):
        opts.setdefault("sync", False)
        # segments are preallocated (the active one and the prepared ones):
        # the 64 MiB default would cost ~200 MB of disk per test
        opts.setdefault("segment_size", 1 << 20)
        log = pyraftlog.open(str(path if path is not None else log_dir), **opts)
        opened.append(log)
        return log

    yield _open
    for log in reversed(opened):
        try:
            log.close()
        except pyraftlog.ClosedError:
            pass
