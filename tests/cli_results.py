"""What the CLI tests check of a `CliRunner` result: success, or exactly one `error:` line with exit 2."""

from __future__ import annotations

import numpy as np
from PIL import Image


def ok(result) -> None:
    assert result.exit_code == 0, result.output


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))
