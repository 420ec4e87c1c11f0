"""A training run's log: each line timestamped, printed and appended to a file that is flushed as it goes,
so a long CPU run can be followed (and read after a crash) while it trains."""

from __future__ import annotations

import time
from pathlib import Path


class RunLog:
    def __init__(self, path: Path) -> None:
        self._file = path.open("w")

    def __call__(self, msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        self._file.write(line + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
