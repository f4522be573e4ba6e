"""The notice board: a page that shows notices as they are posted, the form that posts them,
and the connection tokens that let a signed-in user's page listen."""

import functools
import json
import time

import jwt
from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST
from pushwire.api import Client

from mysite.realtime import CHANNEL


def connection_token(user) -> str:
    """A pushwire connection token (JWT) for a Django user: `sub` is the user's id, `info`
    what the other members of the board see of them (docs/security.md, "Tokens")."""
    claims = {
        "sub": str(user.pk),
        "exp": int(time.time()) + settings.PUSHWIRE_TOKEN_LIFETIME,
        "info": {"name": user.get_username()},
    }
    return jwt.encode(claims, settings.PUSHWIRE_JWT_SECRET, algorithm="HS256")


@functools.cache
def pushwire_api(url: str) -> Client:
    """One client of pushwire's HTTP API per URL, shared by every request (it is
    thread-safe, and keeps its connections open). A view should not hang for long: two
    retries (a publish is retried with one idempotency key, so published once)."""
    return Client(url, api_key=settings.PUSHWIRE_API_KEY, timeout=5.0, retries=2)


class NoticeForm(forms.Form):
    text = forms.CharField(max_length=500, strip=True)


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
    url = settings.PUSHWIRE_API_URL or request.build_absolute_uri(settings.PUSHWIRE_PREFIX)
    published = pushwire_api(url).publish(CHANNEL, json.dumps(notice))
    if wants_json:
        return JsonResponse({"offset": published.offset})
    return redirect("board")
