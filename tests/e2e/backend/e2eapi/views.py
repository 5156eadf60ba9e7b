import hashlib
import time

from django.db import connection
from django.http import HttpResponseNotAllowed, HttpResponseRedirect, JsonResponse
from django.views.decorators.csrf import csrf_exempt


def _meta(request, name):
    return request.META.get(name)


def whoami(request):
    """Report what the backend saw: tenant, Host and the proxy headers."""
    return JsonResponse(
        {
            "tenant": request.tenant.schema_name,
            "schema": connection.schema_name,
            "host": _meta(request, "HTTP_HOST"),
            "x_forwarded_for": _meta(request, "HTTP_X_FORWARDED_FOR"),
            "x_forwarded_proto": _meta(request, "HTTP_X_FORWARDED_PROTO"),
            "x_forwarded_host": _meta(request, "HTTP_X_FORWARDED_HOST"),
            "x_forwarded_port": _meta(request, "HTTP_X_FORWARDED_PORT"),
            "origin": _meta(request, "HTTP_ORIGIN"),
            "referer": _meta(request, "HTTP_REFERER"),
            "remote_addr": _meta(request, "REMOTE_ADDR"),
            "method": request.method,
            "path": request.get_full_path(),
        }
    )


@csrf_exempt
def upload(request):
    """Count (and hash) the request body, reading it as a stream in chunks."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    total = 0
    digest = hashlib.sha256()
    started = time.monotonic()
    while True:
        chunk = request.read(65536)
        if not chunk:
            break
        total += len(chunk)
        digest.update(chunk)
    return JsonResponse(
        {
            "bytes": total,
            "sha256": digest.hexdigest(),
            "content_length": _meta(request, "CONTENT_LENGTH"),
            "transfer_encoding": _meta(request, "HTTP_TRANSFER_ENCODING"),
            "read_seconds": round(time.monotonic() - started, 3),
        }
    )


def redirect_to_whoami(request):
    return HttpResponseRedirect(request.build_absolute_uri("/api/whoami/"))


def slow(request):
    seconds = min(float(request.GET.get("s", "2")), 30.0)
    time.sleep(seconds)
    return JsonResponse({"slept": seconds, "tenant": request.tenant.schema_name})
