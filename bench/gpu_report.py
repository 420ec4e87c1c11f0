"""Rows, the time budget and the markdown tables of bench/gpu_suite.py.

Why a row carries its own status: on a lent machine the suite must print a table whatever happens, so a
backend that is not installed, a check that does not hold, a compile that fails or runs out of time each
become a row that says so ("skipped: ...", "FAIL ...", "failed: ...") instead of ending the run.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

Cell = str | int | float | None


@dataclass
class Row:
    section: str  # "kernels", "unet oracle", "speed", "freecustom"
    cells: dict[str, Cell]
    status: str = "ok"  # "ok"; "FAIL: why"; "skipped: why"; "failed: ExceptionType: message"

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def skipped(self) -> bool:
        return self.status.startswith("skipped")


def skip_row(section: str, cells: dict[str, Cell], reason: str) -> Row:
    return Row(section, cells, f"skipped: {reason}")


def failed_row(section: str, cells: dict[str, Cell], exc: BaseException) -> Row:
    return Row(section, cells, f"failed: {describe(exc)}")


def describe(exc: BaseException) -> str:
    """`Type: first line of the message`, short enough for a table cell."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:160] if lines else ''}".rstrip(": ")


@dataclass
class Budget:
    """Wall-clock seconds the suite may spend (None: no limit), so that it ends inside the device's limit."""

    seconds: float | None
    start: float = field(default_factory=time.perf_counter)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return float("inf") if self.seconds is None else self.seconds - self.elapsed()

    def allows(self, cost_s: float) -> bool:
        return self.left() >= cost_s

    def reason(self, what: str, cost_s: float) -> str:
        return f"time budget ({what} needs ~{cost_s:.0f} s, {max(self.left(), 0):.0f} s left)"


SECTION_TITLES = {
    "kernels": "Each backend against the einsum oracle, per attention call",
    "unet oracle": "Each backend against the einsum oracle, one UNet call through the studio's processors",
    "speed": "UNet calls per second (a batch-2 call is one CFG step: it/s), eager and compiled",
    "freecustom": "FreeCustom (MRSA) with R references, eager, auto backend",
}


def fmt(value: Cell) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:.1f}"
        if abs(value) >= 0.1:
            return f"{value:.3g}" if abs(value) < 10 else f"{value:.2f}"
        return f"{value:.1e}"
    return str(value)


def tables(rows: list[Row]) -> str:
    """One markdown table per section, in the order the sections first appear; columns as the cells first do."""
    out: list[str] = []
    for section in dict.fromkeys(r.section for r in rows):
        these = [r for r in rows if r.section == section]
        columns = list(dict.fromkeys(key for r in these for key in r.cells))
        out.append(f"\n**{SECTION_TITLES.get(section, section)}**\n")
        out.append("| " + " | ".join(columns + ["status"]) + " |")
        out.append("|" + "---|" * (len(columns) + 1))
        for r in these:
            out.append("| " + " | ".join([fmt(r.cells.get(c)) for c in columns] + [r.status]) + " |")
    return "\n".join(out)


def write(out_dir: Path | None, header: str, rows: list[Row], footer: str = "") -> None:
    """Rewrite `gpu_suite.md` and `gpu_suite.json` in `out_dir` (after every job: a killed run keeps its rows)."""
    if out_dir is None:
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "gpu_suite.md").write_text(header + "\n" + tables(rows) + "\n" + footer + "\n")
    (out_dir / "gpu_suite.json").write_text(
        json.dumps({"header": header, "rows": [asdict(r) for r in rows]}, indent=1)
    )
