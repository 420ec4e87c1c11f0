"""The image upload component: gradio's `Image` in the browser, the studio's safe reader on the server.

gradio writes a `.pyi` stub beside any module that subclasses one of its components (and rewrites it when
the class changes); `upload.pyi` is that stub, kept in the repository so that importing the UI writes
nothing into the package. This module holds only the subclass so that the stub stays small.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from gradio.events import Dependency

class StudioImage(gr.Image):
    """An image upload handed to the studio's own reader unopened.

    Why: gradio's `Image` opens uploads with `PIL.Image.open`, so a decompression bomb or a file that is not
    an image fails inside gradio with a bare "Error". Passing the uploaded file's path on (gradio has already
    checked that it is an upload of this app) lets `studio.images.open_image` refuse it with one line.
    """

    def get_block_name(self) -> str:
        return "image"  # the same browser component as gr.Image

    def preprocess(self, payload: Any) -> str | None:
        return None if payload is None or payload.path is None else str(payload.path)
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component