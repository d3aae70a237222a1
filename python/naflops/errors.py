"""The one kind of failure naflops reports: a line and an exit status, never a traceback."""

USAGE_STATUS = 2


class NaflopsError(Exception):
    """A clean failure: str() is the one line to print after "naflops: "."""

    def __init__(self, message, status=USAGE_STATUS):
        super().__init__(message)
        self.status = status
