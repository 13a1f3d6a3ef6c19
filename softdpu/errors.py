"""The errors softdpu reports to a user: each names where the problem is.

Every user-facing failure (bad pipeline file, bad flow line, bad capture)
raises one of these; the CLI prints it as one line and exits non-zero.
"""


class SoftdpuError(Exception):
    """Base of errors meant for the user, printed without a traceback."""


class ConfigError(SoftdpuError):
    """A pipeline file problem: file, line (when known), key, what was expected."""

    def __init__(self, path, key, message, line=None):
        self.path, self.key, self.line = str(path), key, line
        where = f"{self.path}:{line}" if line else self.path
        super().__init__(f"{where}: {key}: {message}")


class FlowSyntaxError(SoftdpuError):
    """A .flows line problem: file:line:column, the token, what was expected."""

    def __init__(self, path, line, column, token, message):
        self.path, self.line, self.column, self.token = str(path), line, column, token
        super().__init__(f"{self.path}:{line}:{column}: {message} (at '{token}')")
