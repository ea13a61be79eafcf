"""Instructions this process executes between two points of its own, when it runs under
valgrind's callgrind with counting off (`valgrind --tool=callgrind --instr-atstart=no`).

`callgrind.h`'s client requests are macros, so a four-line C file is compiled with the
system's compiler and called through ctypes. Outside valgrind they do nothing. With
`Counter.only_inside`, what is counted is narrowed to the calls of one function. An instruction
count does not move with a busy machine as CPU time does (docs/PERFORMANCE.md,
"benchmarks/instructions.py"); unlike CPU time it does not see cache misses either.
"""

from __future__ import annotations

import ctypes
import functools
import importlib
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
void toggle_collecting(void) { CALLGRIND_TOGGLE_COLLECT; }
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

    def only_inside(self, function: str) -> None:
        """Count only within the calls of `function` ("module:Qualified.name"), wherever the
        service's modules hold it (needs `counted(..., inside=True)`)."""
        module, _, name = function.partition(":")
        *path, attribute = name.split(".")
        owner: Any = importlib.import_module(module)
        for part in path:
            owner = getattr(owner, part)
        original = getattr(owner, attribute)
        depth = 0

        @functools.wraps(original)
        def counting(*args: Any, **kwargs: Any) -> Any:
            nonlocal depth
            depth += 1
            if depth == 1:
                self._lib.toggle_collecting()
            try:
                return original(*args, **kwargs)
            finally:
                if depth == 1:
                    self._lib.toggle_collecting()
                depth -= 1

        setattr(owner, attribute, counting)
        for held in list(sys.modules.values()):  # `from module import function` elsewhere
            if held.__name__.startswith("service"):
                for key, value in list(vars(held).items()):
                    if value is original:
                        setattr(held, key, counting)


def under_callgrind(dumps: Path, arguments: Sequence[str], inside: bool = False) -> list[str]:
    """The command that runs this Python with `arguments` under callgrind, counting off (and,
    `inside`, collecting only where `Counter.only_inside` turns it on)."""
    if not shutil.which("valgrind"):
        raise SystemExit("valgrind is needed: apt-get install valgrind")
    return ["valgrind", "--tool=callgrind", "--instr-atstart=no", *["--collect-atstart=no"] * inside,
            f"--callgrind-out-file={dumps}/cg.out", sys.executable, *arguments]


def counted(script: str, arguments: Sequence[str], tree: Path | None = None, inside: bool = False) -> Any:
    """What `script ARGUMENTS --dumps DIR` prints last, as JSON, run in a process of its own under
    callgrind, counting off (the script counts with `Counter(DIR)`); `tree`: the checkout whose
    `service` it imports; `inside`: the script counts within one function (`Counter.only_inside`)."""
    env = {**os.environ, "PYTHONPATH": str(tree)} if tree else None
    with tempfile.TemporaryDirectory(prefix="swapline-dumps-") as dumps:
        ran = subprocess.run(under_callgrind(Path(dumps), [script, *arguments, "--dumps", dumps], inside), env=env,
                             capture_output=True, text=True)
    if ran.returncode:
        raise SystemExit(f"{script} under callgrind failed:\n{ran.stderr[-3000:]}")
    return json.loads(ran.stdout.splitlines()[-1])
