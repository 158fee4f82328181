"""Keep secrets out of every line p9 prints: Redis URLs lose their password, texts lose known secrets."""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

MASK = "***"
_SECRET_QUERY_KEYS = {"password", "pass", "pwd", "ssl_password", "token"}


def url_secrets(url: str) -> list[str]:
    """The secrets in a Redis URL (password in the authority or the query), raw and percent-encoded."""
    try:
        parts = urlsplit(url)
        found = [parts.password or ""]
        found += [v for k, v in parse_qsl(parts.query) if k.lower() in _SECRET_QUERY_KEYS]
    except ValueError:
        return []
    out: list[str] = []
    for s in found:
        if s:
            out += [s, unquote(s), quote(s, safe="")]
    return sorted(set(out), key=len, reverse=True)


def redact_url(url: str) -> str:
    """``redis://user:secret@host:6379/0`` -> ``redis://user:***@host:6379/0`` (username kept)."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, hostport = netloc.rsplit("@", 1)
            user, sep, _pw = userinfo.partition(":")
            netloc = f"{user}:{MASK}@{hostport}" if sep else f"{user}@{hostport}"
            if not sep and user and not parts.password:
                # redis://secret@host: redis-py reads a lone userinfo as the password
                netloc = f"{MASK}@{hostport}"
        query = urlencode(
            [(k, MASK if k.lower() in _SECRET_QUERY_KEYS else v) for k, v in parse_qsl(parts.query)], safe="*/:"
        )
        out = f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")
        return out + (f"#{parts.fragment}" if parts.fragment else "")
    except ValueError:
        return "<redis url>"


def redact(text: str, secrets: list[str]) -> str:
    """Replace every occurrence of each secret in ``text``."""
    for s in secrets:
        if s:
            text = text.replace(s, MASK)
    return text
