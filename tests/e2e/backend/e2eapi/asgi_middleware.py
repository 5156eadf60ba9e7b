import json
import os
import threading
import time

from channels.db import database_sync_to_async

_LOG_LOCK = threading.Lock()


def _headers(scope):
    return {k.decode("latin1").lower(): v.decode("latin1") for k, v in scope.get("headers", [])}


class RequestLogMiddleware:
    """Append one JSON line per HTTP request / WebSocket handshake that reaches
    the backend to $E2E_REQUEST_LOG (if set), before any Django check runs."""

    def __init__(self, app):
        self.app = app
        self.path = os.environ.get("E2E_REQUEST_LOG")

    async def __call__(self, scope, receive, send):
        if self.path and scope["type"] in ("http", "websocket"):
            headers = _headers(scope)
            record = {
                "ts": time.time(),
                "type": scope["type"],
                "method": scope.get("method"),
                "path": scope.get("path"),
                "query": scope.get("query_string", b"").decode("latin1"),
                "host": headers.get("host"),
                "origin": headers.get("origin"),
            }
            with _LOG_LOCK, open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
        return await self.app(scope, receive, send)


@database_sync_to_async
def _schema_for_hostname(hostname):
    from django.db import connection

    from customers.models import Domain

    connection.set_schema_to_public()
    domain = Domain.objects.select_related("tenant").filter(domain=hostname).first()
    return domain.tenant.schema_name if domain else None


class TenantFromHostMiddleware:
    """django-tenants-aware WebSocket scope: resolve the tenant from the Host
    header (port stripped) via the Domain model, as TenantMainMiddleware does
    for HTTP. Sets scope['tenant_schema'] (None if unknown)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        host = _headers(scope).get("host", "")
        hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        hostname = hostname.strip().lower()
        schema = await _schema_for_hostname(hostname) if hostname else None
        return await self.app(dict(scope, tenant_schema=schema), receive, send)
