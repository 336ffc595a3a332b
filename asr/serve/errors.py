"""Errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}` with a real
HTTP status (never a 200 with an error inside, never a 500 for bad input)."""

from __future__ import annotations


class ApiError(Exception):
    """A request the server answers with `status` and OpenAI's error body.

    `type` is OpenAI's error class (`invalid_request_error` for what the client can fix,
    `server_error` for what it cannot); `param` names the form field at fault; `code` is a
    short machine-readable reason; `headers` go on the response (`Retry-After` for 503).
    """

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict:
        """The JSON body.

        >>> ApiError(400, "no file", param="file", code="missing_file").body()["error"]["param"]
        'file'
        """
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def bad_request(message: str, param: str | None = None, code: str = "invalid_value") -> ApiError:
    """400: a request the client can fix (the message says how)."""
    return ApiError(400, message, param=param, code=code)


def too_large(message: str, param: str = "file", code: str = "file_too_large") -> ApiError:
    """413: past --max-upload-mb or --max-audio-seconds."""
    return ApiError(413, message, param=param, code=code)


def busy(message: str, retry_after: int, code: str = "server_busy") -> ApiError:
    """503 with `Retry-After: retry_after` (seconds): the queue is full or the model is loading."""
    return ApiError(
        503, message, type="server_error", code=code, headers={"Retry-After": str(retry_after)}
    )


def unauthorized(message: str) -> ApiError:
    """401: a missing or wrong API key."""
    return ApiError(401, message, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})


# Statuses Starlette raises itself (unknown path, wrong method, malformed multipart body) ->
# OpenAI's code for them.
HTTP_CODES = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed"}
