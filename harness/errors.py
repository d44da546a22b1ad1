"""The one exception type for errors a user can cause and fix (bad plan, unknown suite, missing key).

The CLI prints its message on one line and exits with status 2, without a traceback; anything
else that escapes is a bug in the harness and keeps its traceback.
"""


class HarnessError(Exception):
    """A user-fixable problem. The message names the file/field/model and says what to do."""
