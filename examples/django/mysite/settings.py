"""Settings of the example: Django's login and sessions, and pushwire mounted under /rt.

Secrets come from the environment. With DJANGO_DEBUG=1 (the default here, for trying it out)
a missing one falls back to a value fit for nothing but a laptop; with DJANGO_DEBUG=0 a
missing one stops the start.
"""

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"


def secret(name: str, for_development: str) -> str:
    value = os.environ.get(name)
    if value:
        return value
    if DEBUG:
        return for_development
    raise ImproperlyConfigured(f"set {name} in the environment")


SECRET_KEY = secret("DJANGO_SECRET_KEY", "development only: never use this key for real")
# Host names, one per entry: pushwire serves the same ones (its allow_hosts, against DNS
# rebinding), so no leading-dot patterns here.
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")

# pushwire (mysite/realtime.py): mounted under PUSHWIRE_PREFIX. The views sign each user's
# connection token with PUSHWIRE_JWT_SECRET (HS256, at least 32 bytes) and publish through
# pushwire's HTTP API with PUSHWIRE_API_KEY.
PUSHWIRE_PREFIX = "/rt"
PUSHWIRE_JWT_SECRET = secret(
    "PUSHWIRE_JWT_SECRET", "development only: the connection tokens' secret"
)
PUSHWIRE_API_KEY = secret("PUSHWIRE_API_KEY", "development-only-api-key")
# Where the views reach pushwire's HTTP API: unset, this very site's PUSHWIRE_PREFIX as the
# request names it; a pushwire server of its own (`pushwire serve`) would be named here.
PUSHWIRE_API_URL = os.environ.get("PUSHWIRE_API_URL") or None
# Seconds a connection token lives; the page fetches a new one before it expires.
PUSHWIRE_TOKEN_LIFETIME = 600

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "board",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "mysite.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJANGO_DB", str(BASE_DIR / "db.sqlite3")),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

USE_TZ = True
TIME_ZONE = "UTC"
