"""The JSON error contract shared by every handler, and the objects handlers are given."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import tornado.web

from handlers.pinger import Pinger
from services.errors import InvalidInput, NotFound, ServiceError
from services.events import EventService
from services.hub import Hub
from services.subscriptions import SubscriptionService
from storage.errors import StorageUnavailable

log = logging.getLogger(__name__)

# Codes for errors Tornado raises itself, by HTTP status.
TORNADO_ERROR_CODES = {
    400: ("bad_request", "the request is malformed"),
    403: ("forbidden", "the request is not allowed"),
    404: ("not_found", "no such resource"),
    405: ("method_not_allowed", "this method is not allowed on this resource"),
    413: ("body_too_large", "the request body is too large"),
}


class ApiError(Exception):
    """An HTTP error with a stable snake_case code, rendered as the JSON error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class AppContext:
    """Services and HTTP limits shared by every handler."""

    hub: Hub
    subscriptions: SubscriptionService
    events: EventService
    max_body_bytes: int
    allowed_origins: tuple[str, ...]
    max_socket_buffer_bytes: int
    compression: bool
    pinger: Pinger
    shutting_down: bool = False
    requests_in_flight: int = 0


def to_api_error(error: BaseException | None, status: int) -> ApiError:
    """Map any exception a handler let through to the error sent to the client."""
    if isinstance(error, ApiError):
        return error
    if isinstance(error, InvalidInput):
        return ApiError(400, error.code, error.message)
    if isinstance(error, NotFound):
        return ApiError(404, error.code, error.message)
    if isinstance(error, ServiceError):
        return ApiError(400, error.code, error.message)
    if isinstance(error, StorageUnavailable):
        return ApiError(503, "redis_unavailable", "redis is unavailable, try again shortly")
    if status in TORNADO_ERROR_CODES:
        code, message = TORNADO_ERROR_CODES[status]
        return ApiError(status, code, message)
    if status < 500:
        return ApiError(status, "bad_request", "the request could not be served")
    return ApiError(500, "internal_error", "internal server error")


class JsonErrorMixin(tornado.web.RequestHandler):
    """Render every error as {"error": {"code": ..., "message": ...}}, never with a traceback."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        error = to_api_error(exc_info[1] if exc_info else None, status_code)
        self.set_status(error.status)
        self.clear_header("Content-Type")
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        body = {"error": {"code": error.code, "message": error.message}}
        self.finish(json.dumps(body, ensure_ascii=False, separators=(",", ":")))

    def log_exception(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # A bad request is the client's fault, and the hub logs an outage once.
        # Only an unexpected exception is a bug worth a traceback.
        if isinstance(value, (ApiError, ServiceError, tornado.web.HTTPError, StorageUnavailable)):
            log.debug("%s: %s", self._request_summary(), value)
        else:
            super().log_exception(typ, value, tb)


class BaseHandler(JsonErrorMixin):
    def initialize(self, context: AppContext) -> None:
        self.context = context

    def prepare(self) -> None:
        self.context.requests_in_flight += 1
        self._counted = True

    def on_finish(self) -> None:
        if getattr(self, "_counted", False):
            self.context.requests_in_flight -= 1
            self._counted = False

    def write_json(self, document: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(document, ensure_ascii=False, separators=(",", ":")))

    def write_raw_json(self, body: bytes, status: int = 200) -> None:
        """Send JSON assembled from stored event bytes, which are already encoded."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(body)

    def read_body(self) -> bytes:
        body = self.request.body
        if len(body) > self.context.max_body_bytes:
            raise ApiError(
                413, "body_too_large",
                f"request body is {len(body)} bytes, the maximum is {self.context.max_body_bytes}",
            )
        return body


class NotFoundHandler(BaseHandler):
    """Reject every unknown path with a JSON 404."""

    def prepare(self) -> None:
        super().prepare()
        raise ApiError(404, "not_found", f"no resource at {self.request.path}")
