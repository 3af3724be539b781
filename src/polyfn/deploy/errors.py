"""The one error type of the deploy path; `code` is the stable API error code."""


class DeployError(Exception):
    def __init__(self, code: str, message: str, status: int = 400, extra: dict | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.extra = extra  # more fields of the error object (a quota's name, limit and use)
