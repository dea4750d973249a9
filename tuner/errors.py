"""The two kinds of error agetune has.

A failed trial is Keras Tuner's business: it is logged, recorded in
`trials.csv`, and the search goes on. Everything the user must fix before
anything can run (a bad dataset, an invalid search space, a run folder that
is not one) raises `AgetuneError`, which the command line prints as one
message on stderr with exit code 1.
"""


class AgetuneError(Exception):
    """A fatal error with a message written for the user, naming the value and the fix."""


class DataError(AgetuneError):
    """The dataset cannot be read or has problems that make it unusable."""


class SpaceError(AgetuneError):
    """The search space file is invalid."""


class RunFolderError(AgetuneError):
    """A run folder is missing, incomplete or belongs to another search."""


class WeightsError(AgetuneError):
    """The backbone weights cannot be loaded."""


def first_line(message: str) -> str:
    """Return the first non-empty line of an error message, cut at 300 characters."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return lines[0][:300] if lines else message
