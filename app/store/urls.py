"""STORE_URL: which backend it names, whether it is well formed, and how to show it without its
passwords. PostgreSQL URLs are read by libpq's own parser (through psycopg), never by urllib: a
password may hold `?`, `#` or `[` unencoded, and only libpq knows where it ends."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from app.store.base import StoreError

SQLITE_SCHEME = "sqlite:///"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
SECRET_PARAMETERS = ("password", "sslpassword")
SHOWN_PARAMETERS = ("sslmode", "target_session_attrs", "application_name")


def backend_name(store_url: str) -> str:
    return "postgresql" if store_url.startswith(POSTGRES_SCHEMES) else "sqlite"


def check_store_url(store_url: str) -> str:
    """The URL, or ValueError saying what is wrong with it (never quoting it: it holds secrets)."""
    if store_url.startswith(POSTGRES_SCHEMES):
        if _params(store_url) is None:  # libpq's error text can quote the URL, password and all
            raise ValueError("not a valid postgresql:// URL")
    elif not store_url.startswith(SQLITE_SCHEME):
        scheme = store_url.partition(":")[0] or store_url
        raise ValueError(
            f"unsupported scheme {scheme!r}: use sqlite:///path/to/file.db or"
            " postgresql://user:password@host:5432/db"
        )
    return store_url


def _params(store_url: str) -> dict[str, Any] | None:
    """libpq's reading of a postgresql:// URL; None for another scheme or a URL libpq refuses."""
    if not store_url.startswith(POSTGRES_SCHEMES):
        return None
    # Here, not at the top: a process whose store is SQLite never loads psycopg (~10 MiB).
    import psycopg  # noqa: PLC0415
    from psycopg.conninfo import conninfo_to_dict  # noqa: PLC0415

    try:
        return conninfo_to_dict(store_url)
    except psycopg.ProgrammingError:
        return None


def url_secrets(store_url: str) -> list[str]:
    """The passwords a postgresql:// STORE_URL carries, as written and as libpq reads them."""
    # A password both in the user part and as a parameter: libpq uses the parameter, yet both are
    # secrets. Reading the URL cut at each `?` finds the user part's too.
    cuts = [store_url] + [store_url[:i] for i, ch in enumerate(store_url) if ch == "?"]
    found = set()
    for url in cuts:
        params = _params(url) or {}
        for name in SECRET_PARAMETERS:
            value = str(params.get(name) or "")
            if value:
                found |= {
                    value,
                    quote(value, safe=""),
                    quote(value),
                    quote(value).replace("%20", "+"),
                }
    # What a user wrote after `user:` is a secret even where libpq reads it otherwise (an
    # unencoded `/` in it, say): the URL's user part runs to its last `@`.
    userinfo = store_url.partition("://")[2].rpartition("@")[0]
    if ":" in userinfo:
        found.add(userinfo.partition(":")[2])
    return sorted(secret for secret in found if secret)


def shown_url(store_url: str) -> str:
    """STORE_URL fit for logs and the console: rebuilt from what libpq reads, passwords masked."""
    if not store_url.startswith(POSTGRES_SCHEMES):
        return store_url
    params = _params(store_url)
    if params is None:
        return "postgresql://(not a valid URL)"
    user = str(params.get("user") or "")
    if user and params.get("password"):
        user += ":***"
    host = str(params.get("host") or "")
    port = f":{params['port']}" if params.get("port") else ""
    extra = [f"{k}={params[k]}" for k in SHOWN_PARAMETERS if params.get(k)]
    extra += [f"{k}=***" for k in SECRET_PARAMETERS[1:] if params.get(k)]
    query = "?" + "&".join(extra) if extra else ""
    dbname = params.get("dbname") or ""
    shown = f"postgresql://{user + '@' if user else ''}{host}{port}/{dbname}{query}"
    for secret in sorted(url_secrets(store_url), key=len, reverse=True):
        shown = shown.replace(secret, "***")
    return shown


def sqlite_path(store_url: str) -> str:
    """`sqlite:///relative/path.db`, `sqlite:////absolute/path.db` or `sqlite:///:memory:`."""
    if not store_url.startswith(SQLITE_SCHEME):
        scheme = store_url.partition(":")[0] or store_url
        raise StoreError(f"unsupported STORE_URL scheme {scheme!r}: use sqlite:///path/to/file.db")
    return store_url[len(SQLITE_SCHEME) :] or ":memory:"
