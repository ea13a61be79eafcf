"""On PYTHONPATH, runs this Python's wall clock 60 s ahead: a service process on a machine whose
clock is off, as `tests/test_clock.py` needs. The monotonic clock is left alone, as NTP leaves it."""

import time

SKEW = 60.0
_wall = time.time
time.time = lambda: _wall() + SKEW
