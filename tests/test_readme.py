"""The README's command blocks run as written.

Each ```bash block of README.md is split into commands (backslash continuations joined, comments
dropped); every `studio ...` command runs in-process through the CLI app, in order, in a temporary
folder holding a copy of the bundled concept images at the paths the README names, offline. Other
commands are skipped, for the reason `SKIPPED` gives.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest

from studio.cli import app

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("quiet_cli_env")]
SKIPPED = {
    "make": "sets up the environment (and `make test` is this test suite)",
    "pip": "installs packages",
    "python": "retrains the toyworld model (tens of minutes)",
}


def readme_commands(text: str) -> list[list[str]]:
    """The commands of every ```bash block, as argument lists."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.M | re.S):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(words)
    return commands


def test_the_readme_lists_studio_commands():
    commands = readme_commands((ROOT / "README.md").read_text())
    studio = [c for c in commands if c[0] == "studio"]
    assert len(studio) >= 10
    assert all(c[0] == "studio" or c[0] in SKIPPED for c in commands), [c[0] for c in commands]


def test_every_readme_command_runs(runner, tmp_path, monkeypatch):
    for folder in ("concepts", "ip_adapter"):  # the bundled files the README's commands name
        shutil.copytree(ROOT / "assets" / "toyworld" / folder, tmp_path / "assets" / "toyworld" / folder)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for words in readme_commands((ROOT / "README.md").read_text()):
        if words[0] != "studio":
            continue
        result = runner.invoke(app, words[1:])
        assert result.exit_code == 0, f"{shlex.join(words)}\n{result.output}"
    assert Path("again.png").read_bytes() == Path("star.png").read_bytes()  # the README says: the same bytes
