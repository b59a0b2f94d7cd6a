"""Showing URLs without their secrets, for logs, errors and ``--dump-config``."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

# Query parameters that carry a password in the URLs admins write.
_SECRET_QUERY_KEYS = ("password", "pass", "sslpassword")


def mask_url(url: str) -> str:
    """Replace the password of ``url`` (and any ``pass``/``password`` query value) by ``***``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, sep, _password = userinfo.partition(":")
        if sep:
            netloc = f"{user}:***@{hostport}"
        elif parts.scheme.startswith("redis"):
            # redis://secret@host is how some clients spell a password alone.
            netloc = f"***@{hostport}"
    query = "&".join(
        f"{k}=***" if unquote(k).lower() in _SECRET_QUERY_KEYS else f"{k}{eq}{v}"
        for k, eq, v in (item.partition("=") for item in parts.query.split("&") if item)
    )
    head = f"{parts.scheme}://{netloc}" if "://" in url else f"{parts.scheme}:{netloc}"
    # Built by hand: urlunsplit drops the "//" of unknown schemes such as redis+unix.
    return (
        head
        + parts.path
        + (f"?{query}" if query else "")
        + (f"#{parts.fragment}" if parts.fragment else "")
    )
