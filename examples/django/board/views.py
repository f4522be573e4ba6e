"""The notice board: a page that shows notices as they are posted, the form that posts them,
the connection tokens that let a signed-in user's page listen, and signing out, which closes
the user's pushwire connections."""

import functools
import json
import logging
import time

import jwt
from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.signals import user_logged_out
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST
from pushwire.api import Client
from pushwire.errors import ApiError

from mysite.realtime import CHANNEL

logger = logging.getLogger(__name__)


def connection_token(user) -> str:
    """A pushwire connection token (JWT) for a Django user: `sub` is the user's id, `info`
    what the other members of the board see of them (docs/security.md, "Tokens")."""
    claims = {
        "sub": str(user.pk),
        "exp": int(time.time()) + settings.PUSHWIRE_TOKEN_LIFETIME,
        "info": {"name": user.get_username()},
    }
    return jwt.encode(claims, settings.PUSHWIRE_JWT_SECRET, algorithm="HS256")


def pushwire_api(request: HttpRequest) -> Client:
    """The client of pushwire's HTTP API: at PUSHWIRE_API_URL, or else this site's prefix as
    the request names it."""
    url = settings.PUSHWIRE_API_URL or request.build_absolute_uri(settings.PUSHWIRE_PREFIX)
    return _client(url)


@functools.cache
def _client(url: str) -> Client:
    # One per URL, shared by every request (it is thread-safe, and keeps its connections
    # open). A view should not hang for long: two retries (a publish is retried with one
    # idempotency key, so it is published once).
    return Client(url, api_key=settings.PUSHWIRE_API_KEY, timeout=5.0, retries=2)


class NoticeForm(forms.Form):
    text = forms.CharField(max_length=500, strip=True)


@never_cache  # the page holds a token
@require_GET
@login_required
def board(request: HttpRequest) -> HttpResponse:
    pushwire = {
        "prefix": settings.PUSHWIRE_PREFIX,
        "channel": CHANNEL,
        "token": connection_token(request.user),
        "tokenUrl": reverse("push_token"),
    }
    return render(request, "board/index.html", {"pushwire": pushwire})


@never_cache
@require_GET
def push_token(request: HttpRequest) -> HttpResponse:
    """A fresh connection token for the page's `getToken` (as text); 401 when signed out,
    so a page whose user signed out elsewhere stops listening."""
    if not request.user.is_authenticated:
        return HttpResponse("sign in first\n", status=401, content_type="text/plain")
    return HttpResponse(connection_token(request.user), content_type="text/plain")


@require_POST
@login_required
def post_notice(request: HttpRequest) -> HttpResponse:
    """Publish a notice to the board through pushwire's HTTP API. CSRF-checked by Django's
    middleware like any POST; answers JSON to the page's `fetch`, a redirect to a plain
    form post."""
    form = NoticeForm(request.POST)
    wants_json = "application/json" in request.headers.get("Accept", "")
    if not form.is_valid():
        if wants_json:
            return JsonResponse({"errors": form.errors}, status=400)
        return redirect("board")
    notice = {
        "author": request.user.get_username(),
        "text": form.cleaned_data["text"],
        "at": timezone.now().isoformat(timespec="seconds"),
    }
    published = pushwire_api(request).publish(CHANNEL, json.dumps(notice))
    if wants_json:
        return JsonResponse({"offset": published.offset})
    return redirect("board")


# Connected when the URLconf imports this module, before a sign-out can be served.
@receiver(user_logged_out)
def disconnect_from_pushwire(sender, request: HttpRequest, user, **kwargs) -> None:
    """Signing out closes the user's pushwire connections at once (close 4101: their pages
    stop), rather than when their tokens expire. One process only: with a Redis broker the
    API answers 501 (docs/protocol.md), and the tokens' expiry ends them instead."""
    if user is None:
        return
    try:
        pushwire_api(request).disconnect(str(user.pk))
    except ApiError as exc:  # signed out all the same; the connections end with their tokens
        logger.warning("could not close user %s's pushwire connections: %s", user.pk, exc)
