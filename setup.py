"""Build hook: a wheel carries the bundled toyworld model (assets/toyworld) as `toyworld/model/`.

Why a hook: the weights live in `assets/toyworld/` in the repository, where job files and documents name
them, and setuptools' package data can only take files from inside a package's folder. Copying them when
the wheel is built ships them without a second copy in git; `toyworld.toyworld_path()` finds them there.
An editable install reads `assets/toyworld/` in place, so it skips the copy. Everything else about the
build is declared in pyproject.toml.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

MODEL_SOURCE = Path(__file__).resolve().parent / "assets" / "toyworld"


class BuildPyWithToyworldModel(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode or not MODEL_SOURCE.is_dir():
            return
        target = Path(self.build_lib) / "toyworld" / "model"
        shutil.copytree(MODEL_SOURCE, target, dirs_exist_ok=True)


setup(cmdclass={"build_py": BuildPyWithToyworldModel})
