"""The studio's error hierarchy.

Why: every expected failure (a bad model reference, a pickle checkpoint, a broken image, an invalid job)
must reach the user as one clear line and a meaningful exit code, without a traceback. Library code
raises these; only the CLI (and later the UI/batch edges) catches them. Anything that is not a
`StudioError` is a bug and is allowed to show its traceback.

Exit codes follow the usual CLI convention: 2 for usage/input errors, 1 for a
run that failed, 130 for a cancelled run.
"""

from __future__ import annotations


class StudioError(Exception):
    """Base of every error the studio expects and explains. `exit_code` is what the CLI returns."""

    exit_code: int = 2


# --- inputs the user gave us -------------------------------------------------------------------------


class InputError(StudioError):
    """Something the user passed in is unusable (usage/input error, exit 2)."""


class ImageError(InputError):
    """An input image could not be accepted."""


class EmptyFileError(ImageError):
    """The file has zero bytes."""


class NotAnImageError(ImageError):
    """The bytes are not any image format we recognise."""


class UnsupportedImageFormatError(ImageError):
    """A real image, but in a format the studio does not decode (only PNG, JPEG and WebP are accepted)."""


class TruncatedImageError(ImageError):
    """The image header is fine but its data is cut short or corrupt."""


class ImageTooLargeError(ImageError):
    """The image exceeds the studio's pixel limit (a decompression-bomb guard)."""


class JobSpecError(InputError):
    """A job spec is malformed, invalid, or from an unsupported schema version."""


class OutputError(InputError):
    """An output cannot be written where asked (a folder, no permission, a full disk, a taken name)."""


class MetadataError(InputError):
    """An image carries no studio or A1111 metadata we can turn into a job."""


# --- models ------------------------------------------------------------------------------------------


class ModelReferenceError(InputError):
    """A model reference that resolves to nothing we can load."""


class UnknownModelReferenceError(ModelReferenceError):
    """Not a provided model's name, a local folder, a safetensors file, or a reachable hub id."""


class ProviderError(ModelReferenceError):
    """A declared model or mask provider could not be imported (a broken or half-installed model family)."""


class PickleCheckpointError(ModelReferenceError):
    """A pickle-format weight file. The studio refuses it and never unpickles it."""


class UnsupportedModelError(ModelReferenceError):
    """A loadable file or folder, but not a model family the studio supports."""


class ModelLoadError(StudioError):
    """The reference looked right but loading it failed (missing config offline, broken weights...)."""

    exit_code = 1


# --- running -----------------------------------------------------------------------------------------


class DeviceError(InputError):
    """A requested device, dtype or memory preset is not available on this machine."""


class RunError(StudioError):
    """The job was valid but running it failed."""

    exit_code = 1


class JobCancelledError(StudioError):
    """The job was cancelled cooperatively at a step boundary."""

    exit_code = 130
