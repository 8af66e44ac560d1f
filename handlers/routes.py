"""The URL table and the Tornado application."""

from __future__ import annotations

import logging
from typing import Any

import tornado.web

from handlers.base import AppContext, NotFoundHandler
from handlers.events import EventsHandler, UserEventsHandler
from handlers.health import HealthHandler
from handlers.notifications import NotificationSocket
from handlers.subscriptions import SubscriptionHandler, UserSubscriptionsHandler

access_log = logging.getLogger("tornado.access")


def make_application(context: AppContext) -> tornado.web.Application:
    arguments: dict[str, Any] = {"context": context}
    # Path segments match even when empty or malformed, so validation can name the problem.
    routes = [
        (r"/subscriptions/([^/]*)/([^/]*)", SubscriptionHandler, arguments),
        (r"/subscriptions/([^/]*)", UserSubscriptionsHandler, arguments),
        (r"/events", EventsHandler, arguments),
        (r"/events/([^/]*)", UserEventsHandler, arguments),
        (r"/notifications/([^/]*)", NotificationSocket, arguments),
        (r"/healthz", HealthHandler, arguments),
    ]
    return tornado.web.Application(
        routes,
        default_handler_class=NotFoundHandler,
        default_handler_args=arguments,
        log_function=log_request,
    )


def log_request(handler: tornado.web.RequestHandler) -> None:
    """Log each request; only a 500 is an error, since 503 means Redis is away, which the hub reports."""
    status = handler.get_status()
    if status < 400:
        level = logging.INFO
    elif status == 500:
        level = logging.ERROR
    else:
        level = logging.WARNING
    access_log.log(
        level, "%d %s %.2fms", status, handler._request_summary(), 1000.0 * handler.request.request_time()
    )
