"""Keep third-party chatter off the terminal of the studio's own entry points (CLI, demo).

Why: transformers prints import-time notices and diffusers/transformers draw loading progress bars on
stderr; in the CLI they bury our one-line errors and our own progress. These switches are process-wide,
so only entry points that own their process call them, never library code. `setdefault` keeps a
user's own TRANSFORMERS_VERBOSITY / DIFFUSERS_VERBOSITY / HF_HUB_DISABLE_PROGRESS_BARS in charge.
"""

from __future__ import annotations

import os


def quiet_environment() -> None:
    """Set quiet defaults that libraries read when first imported (cheap: imports nothing)."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def quiet_diffusers() -> None:
    """Turn off diffusers' ("Loading pipeline components") and transformers' ("Loading weights") progress
    bars, which ignore the env vars once the libraries are imported."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
