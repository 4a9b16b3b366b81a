"""The model test (tests/test_model.py) over a log whose segments are small
and keep turning over: every example starts by filling several segments and
compacting them away, the engine purges on its own (a low purge_threshold)
and on demand (a `purge` rule), so recycled segments, rewritten groups (in
staged batches) and replay of a log whose oldest segments are gone happen in
every example —
still compared with the in-memory model after every step and every reopen."""
import pytest
from hypothesis import settings
from hypothesis.stateful import rule

import pyraftlog
from pyraftlog import Entry

from tests.common import wait_until
from tests.model import replay
from tests.test_model import EXAMPLES, GROUPS, LogMachine

SEGMENT = 64 * 1024
FILL = 24   # batches of ~8 KB: three segments' worth
STAGE_BYTES = 2048


class RingLogMachine(LogMachine):
    def __init__(self):
        super().__init__()
        self._fill()
        self.log.purge()
        # recycling runs on the engine's preparer thread: give it a moment
        assert wait_until(lambda: self.log.stats()["segments_recycled"] > 0), self.log.stats()

    def _open(self):
        # purge_batch_bytes: every group of more than a few entries is
        # rewritten in staged batches (STAGE records, then an ADOPT)
        return pyraftlog.open(self.dir, segment_size=SEGMENT, sync=False, prepare_ahead=1,
                              purge_threshold=3 * SEGMENT, purge_batch_bytes=STAGE_BYTES)

    def _fill(self):
        """Entries into the first group, compacted at once: the model gets
        the same batches, so the comparison stays exact."""
        g = GROUPS[0]
        for _ in range(FILL):
            first = self.model.last_index(g) + 1
            ops = [("append", g, [Entry(first + k, 1, b"f" * 1000) for k in range(8)]),
                   ("compact", g, first + 6)]
            self.model.write(ops)
            self.log.write(replay(ops, self.log.batch())).wait()

    @rule()
    def fill(self):
        self._fill()

    @rule()
    def purge(self):
        self.log.purge()


RingLogMachine.TestCase.settings = settings(LogMachine.TestCase.settings,
                                            max_examples=max(10, LogMachine.TestCase.settings
                                                             .max_examples // 3))
TestRingLogMachine = pytest.mark.timeout(max(300, 6 * EXAMPLES))(RingLogMachine.TestCase)
