"""Errors that carry a one-line message a person can act on.

Every problem caused by user input (a flag, a config file, a checkpoint, an image, a
dataset folder) is raised as a subclass of `DDPMError`. The command line prints
`str(error)` and exits with code 2; the app shows it in a dialog and the status bar.
Anything else reaching the top is a bug and keeps its traceback.
"""


class DDPMError(Exception):
    """Base class: a problem with user input, described in one line."""


class ConfigError(DDPMError):
    """A configuration value (flag, config file, GUI field) is invalid."""


class DataError(DDPMError):
    """A dataset cannot be found, downloaded, or read."""


class CheckpointError(DDPMError):
    """A checkpoint file is missing, corrupt, unsafe, or does not fit the model."""


class OutputError(DDPMError):
    """An exported file (PNG, GIF) cannot be written where the person asked."""


class TrainingDiverged(DDPMError):
    """The loss became NaN or infinite: the weights are no longer worth saving."""


class OutOfMemory(DDPMError):
    """The device ran out of memory; a smaller batch (or the CPU) is the way on."""

    def __init__(self, message: str, batch_size: int | None = None):
        super().__init__(message)
        self.batch_size = batch_size  # what did not fit
        self.suggested_batch_size = max(1, batch_size // 2) if batch_size else None


def as_one_line(error: BaseException | str, limit: int = 200) -> str:
    """An error's text on one line, whitespace runs collapsed, cut at `limit` characters;
    for messages quoting a library's error, which may run over lines."""
    text = " ".join(str(error).split())
    if not text and isinstance(error, BaseException):
        text = type(error).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shown(value, limit: int = 40) -> str:
    """A value as an error message quotes it: repr, cut to `limit` characters. Python will not
    even write out an integer of over 4,300 digits, so such a one is described instead."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 1000:
        return f"a number of about {int(value.bit_length() * 0.30103):,} digits"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
