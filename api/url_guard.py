"""Webhook URL checks: http(s) only, and no hosts that resolve to internal addresses.

Checked when a webhook is registered and again before every delivery, so a
name that later resolves elsewhere (DNS rebinding) is caught too.
"""

import ipaddress
import socket
from urllib.parse import urlsplit


def problem_with(url: str, allow_private: bool) -> str | None:
    """Why `url` may not receive webhooks, or None when it may."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "Not a valid URL."
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "Must be an http or https URL with a host."
    if parts.username or parts.password:
        return "Must not contain credentials."
    try:
        infos = socket.getaddrinfo(parts.hostname, port or (443 if parts.scheme == "https" else 80),
                                   proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return f"Host {parts.hostname!r} does not resolve."
    if allow_private:
        return None
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if (address.is_private or address.is_loopback or address.is_link_local
                or address.is_multicast or address.is_reserved or address.is_unspecified):
            return (f"Host {parts.hostname!r} resolves to a non-public address ({address}); "
                    "set WEBHOOK_ALLOW_PRIVATE=true to allow it.")
    return None
