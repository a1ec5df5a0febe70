"""Two kinds of failure, told apart so that callers can react to each.

- :class:`SelfJInputError`: the user gave something unusable (a missing column, a bad flag, an unknown model). The CLI
  prints it as one line and exits 2; it is a ``ValueError`` so that code catching bad values keeps working.
- :class:`SelfJRuntimeError`: valid input, but the run itself failed (a loss that diverged, an upload the Hub
  refused). The CLI prints it as one line and exits 1: rerunning or changing a setting may help, fixing input won't.

Neither is used for control flow: code that skips a row or retries checks a condition, it does not catch these.
"""


class SelfJError(Exception):
    """Base of every error this package raises on purpose."""


class SelfJInputError(SelfJError, ValueError):
    """Bad input the user can fix: the message names the field and the fix."""


class SelfJRuntimeError(SelfJError, RuntimeError):
    """A run that failed on valid input: the message says what failed and what was kept."""


class TrainingDivergedError(SelfJRuntimeError):
    """The loss became NaN or infinite; the message names the step."""


class UploadError(SelfJRuntimeError):
    """The Hub refused or dropped an upload; local files are untouched."""


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none): what a one-line error quotes."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
