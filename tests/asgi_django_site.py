"""docs/asgi.md's Django recipe, whole: a Django project whose `asgi.py` sends `/rt` (and the
lifespan) to pushwire and the rest to Django, with views that publish in-process, async and
sync. Served by tests/asgiapp/test_django.py as `tests.asgi_django_site:application`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import django
from asgiref.sync import async_to_sync
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

import pushwire

settings.configure(
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    SECRET_KEY="the django recipe test's key, never used for anything",
    INSTALLED_APPS=[],
    MIDDLEWARE=[],
)
django.setup()

from django.core.asgi import get_asgi_application  # noqa: E402 (after setup)

hub = pushwire.Hub()


@csrf_exempt
async def shout(request: HttpRequest, channel: str) -> JsonResponse:
    message = await hub.publish(channel, request.body.decode())
    return JsonResponse({"offset": message.offset})


@csrf_exempt
def shout_sync(request: HttpRequest, channel: str) -> JsonResponse:
    message = async_to_sync(hub.publish)(channel, request.body.decode())
    return JsonResponse({"offset": message.offset})


urlpatterns = [
    path("shout/<str:channel>", shout),
    path("shout-sync/<str:channel>", shout_sync),
]

django_app = get_asgi_application()
realtime = pushwire.asgi(hub)
PREFIX = "/rt"

Scope = MutableMapping[str, Any]


async def application(
    scope: Scope,
    receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
    send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
) -> None:
    if scope["type"] == "lifespan":
        await realtime(scope, receive, send)
    elif scope["path"] == PREFIX or scope["path"].startswith(PREFIX + "/"):
        await realtime(dict(scope, root_path=scope.get("root_path", "") + PREFIX), receive, send)
    else:
        await django_app(scope, receive, send)
