"""ASGI entry point: project.asgi:application (served by Daphne).

http      -> Django (django-tenants picks the schema from the Host header)
websocket -> AllowedHostsOriginValidator -> tenant-from-Host -> ws/echo/
Every scope is first appended to $E2E_REQUEST_LOG so tests can prove that a
request did (or did not) reach the backend at all.
"""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
django_asgi_app = get_asgi_application()

# Import after Django is set up.
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from e2eapi.asgi_middleware import RequestLogMiddleware, TenantFromHostMiddleware  # noqa: E402
from e2eapi.routing import websocket_urlpatterns  # noqa: E402

application = RequestLogMiddleware(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            "websocket": AllowedHostsOriginValidator(
                TenantFromHostMiddleware(URLRouter(websocket_urlpatterns))
            ),
        }
    )
)
