"""User-facing errors: one clear line, exit code 2, no traceback (see cli.main)."""


class UserError(Exception):
    """A mistake in the user's input: a missing file, a bad option, data of the wrong shape.

    The message is one line that names the file or option and says what was expected.
    """


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""
