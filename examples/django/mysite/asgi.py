"""The site's ASGI application: pushwire under /rt (WebSocket included) and the lifespan,
which starts and stops pushwire, go to pushwire; every other request to Django.

Serve it with `uvicorn mysite.asgi:application` (or hypercorn, or daphne): one process, one
port. Django's own `runserver` speaks no WebSocket and no lifespan.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
django_app = get_asgi_application()  # sets Django up: the settings are read from here on

from django.conf import settings  # noqa: E402

from mysite.realtime import realtime  # noqa: E402

PREFIX = settings.PUSHWIRE_PREFIX


async def application(scope, receive, send):
    if scope["type"] == "lifespan":
        await realtime(scope, receive, send)  # Django has no lifespan of its own
    elif scope["path"] == PREFIX or scope["path"].startswith(PREFIX + "/"):
        # pushwire routes the path below root_path: /rt/pushwire is its /pushwire.
        await realtime(dict(scope, root_path=scope.get("root_path", "") + PREFIX), receive, send)
    else:
        await django_app(scope, receive, send)
