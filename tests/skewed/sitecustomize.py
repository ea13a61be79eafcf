"""On PYTHONPATH, runs this Python's wall clock `SKEWED_BY` seconds ahead: a service process on a
machine whose clock is off (tests.conftest.skewed). The monotonic clock is left alone, as NTP
leaves it. Never imported by the tests themselves: it would skew theirs."""

import os
import time

_wall, _skew = time.time, float(os.environ["SKEWED_BY"])
time.time = lambda: _wall() + _skew
