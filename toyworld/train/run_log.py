"""A training run's log: each line timestamped, printed and appended to a file that is flushed as it goes,
so a long CPU run can be followed (and read after a crash) while it trains."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def args_record(args: argparse.Namespace) -> dict:
    """A run's command-line options as JSON-ready values (paths as strings), for its report and log."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}


class RunLog:
    def __init__(self, path: Path, append: bool = False) -> None:
        """append: continue the file (a stage run on a model that already has this stage's log)."""
        self._file = path.open("a" if append else "w")

    def __call__(self, msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        self._file.write(line + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
