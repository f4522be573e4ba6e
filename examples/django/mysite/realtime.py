"""The pushwire hub this site serves under /rt: Django's users connect with a token the site
signs (board/views.py), and only the server publishes to the board (through the HTTP API,
with the API key), so every notice goes through Django's login and CSRF checks."""

import pushwire
from django.conf import settings
from pushwire.auth.namespaces import Namespace

#: The one channel of the board: in the `board` namespace below.
CHANNEL = "board:notices"

config = pushwire.Config(
    jwt_secret=settings.PUSHWIRE_JWT_SECRET,
    api_key=settings.PUSHWIRE_API_KEY,
    allow_hosts=tuple(settings.ALLOWED_HOSTS),
)
hub = pushwire.Hub(
    config=config,
    # Signed-in users read `board:*` and see who else is there; no client may publish to it:
    # notices come from the server. Any other channel is refused.
    namespaces=[Namespace("board", subscribe="authenticated", publish="nobody", presence=True)],
)
realtime = pushwire.asgi(hub)
