"""S3 errors: one exception carrying the HTTP status and the S3 error code, rendered as S3's error XML."""

from __future__ import annotations

from xml.sax.saxutils import escape


class S3Error(Exception):
    """An error answered to an S3 client: `<Error><Code>…</Code><Message>…</Message>…</Error>`."""

    def __init__(self, status: int, code: str, message: str, resource: str = "", **extra: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.resource = resource
        self.extra = extra
        self.headers: list[tuple[bytes, bytes]] = []  # response headers beside the XML (x-amz-delete-marker …)

    def xml(self, request_id: str) -> bytes:
        parts = [f"<Code>{self.code}</Code><Message>{escape(self.message)}</Message>"]
        if self.resource:
            parts.append(f"<Resource>{escape(self.resource)}</Resource>")
        for k, v in self.extra.items():
            parts.append(f"<{k}>{escape(v)}</{k}>")
        parts.append(f"<RequestId>{request_id}</RequestId>")
        return ('<?xml version="1.0" encoding="UTF-8"?>\n<Error>' + "".join(parts) + "</Error>").encode()


def no_such_bucket(bucket: str) -> S3Error:
    return S3Error(404, "NoSuchBucket", "The specified bucket does not exist", f"/{bucket}", BucketName=bucket)


def no_such_key(bucket: str, key: str) -> S3Error:
    return S3Error(404, "NoSuchKey", "The specified key does not exist.", f"/{bucket}/{key}", Key=key)


def access_denied(message: str = "Access Denied") -> S3Error:
    return S3Error(403, "AccessDenied", message)


def invalid_argument(message: str) -> S3Error:
    return S3Error(400, "InvalidArgument", message)


def insufficient_storage(message: str = "The server has no space left to store the object") -> S3Error:
    return S3Error(507, "InsufficientStorage", message)
