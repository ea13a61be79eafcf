"""The parent of several workers: uvicorn's, but a failed start fails `swapline serve`."""

from __future__ import annotations

from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess


class Supervisor(Multiprocess):
    """uvicorn stops its workers when one fails to start (a broken setting would fail every
    restart the same way), and returns as if asked to: `failed` tells `swapline serve` to exit
    with the code one worker of its own would (3), so that systemd, Docker and scripts see it."""

    failed = False

    def keep_subprocess_alive(self) -> None:
        super().keep_subprocess_alive()
        self.failed = self.failed or any(process.exitcode == STARTUP_FAILURE for process in self.processes)
