"""Instructions this process executes between two points of its own, when it runs under
valgrind's callgrind with counting off (`valgrind --tool=callgrind --instr-atstart=no`).

`callgrind.h`'s client requests are macros, so a three-line C file is compiled with the
system's compiler and called through ctypes. Outside valgrind they do nothing. An instruction
count does not move with a busy machine as CPU time does (docs/PERFORMANCE.md,
"benchmarks/instructions.py"); unlike CPU time it does not see cache misses either.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SOURCE = r"""
#include <valgrind/callgrind.h>
void counting_on(void) { CALLGRIND_START_INSTRUMENTATION; CALLGRIND_ZERO_STATS; }
void counting_off(const char *name) { CALLGRIND_DUMP_STATS_AT(name); CALLGRIND_STOP_INSTRUMENTATION; }
"""


class Counter:
    """`on()`, then `off()` gives the instructions in between (needs `--callgrind-out-file=DUMPS/cg.out`)."""

    def __init__(self, dumps: Path) -> None:
        self.dumps = dumps
        built = Path(tempfile.mkdtemp(prefix="swapline-callgrind-"))
        (built / "counting.c").write_text(SOURCE)
        subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(built / "counting.so"), str(built / "counting.c")],
                       check=True)
        self._lib = ctypes.CDLL(str(built / "counting.so"))

    def on(self) -> None:
        self._before = set(self.dumps.glob("cg.out.*"))
        self._lib.counting_on()

    def off(self) -> int:
        self._lib.counting_off(b"counted")
        (dump,) = set(self.dumps.glob("cg.out.*")) - self._before
        totals = next(line for line in dump.read_text(errors="replace").splitlines() if line.startswith("totals:"))
        dump.unlink()
        return int(totals.split()[1])


def under_callgrind(dumps: Path, arguments: Sequence[str]) -> list[str]:
    """The command that runs this Python with `arguments` under callgrind, counting off."""
    if not shutil.which("valgrind"):
        raise SystemExit("valgrind is needed: apt-get install valgrind")
    return ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={dumps}/cg.out",
            sys.executable, *arguments]


def counted(script: str, arguments: Sequence[str], tree: Path | None = None) -> Any:
    """What `script ARGUMENTS --dumps DIR` prints last, as JSON, run in a process of its own under
    callgrind, counting off (the script counts with `Counter(DIR)`); `tree`: the checkout whose
    `service` it imports."""
    env = {**os.environ, "PYTHONPATH": str(tree)} if tree else None
    with tempfile.TemporaryDirectory(prefix="swapline-dumps-") as dumps:
        ran = subprocess.run(under_callgrind(Path(dumps), [script, *arguments, "--dumps", dumps]), env=env,
                             capture_output=True, text=True)
    if ran.returncode:
        raise SystemExit(f"{script} under callgrind failed:\n{ran.stderr[-3000:]}")
    return json.loads(ran.stdout.splitlines()[-1])
