"""On PYTHONPATH, runs this Python's wall clock ahead (60 s, or `SKEWED_BY` seconds): a service
process on a machine whose clock is off, for `tests/test_clock.py` and `tests/test_faults.py`. The
monotonic clock is left alone, as NTP leaves it."""

import os
import time

SKEW = float(os.environ.get("SKEWED_BY", "60"))
_wall = time.time
time.time = lambda: _wall() + SKEW
