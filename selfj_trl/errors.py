"""One exception type for every mistake a user can fix.

The CLI turns it into a one-line message and a non-zero exit instead of a traceback; library callers can catch it
(it is a ``ValueError``, so code that already catches bad-value errors keeps working).
"""


class SelfJInputError(ValueError):
    """Bad input the user can fix: the message names the field and the fix."""
