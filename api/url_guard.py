"""Webhook URL checks: http(s) only, and no hosts that resolve to internal addresses.

Checked when a webhook is registered and again before every delivery, so a
name that later resolves elsewhere (DNS rebinding) is caught too. Deliveries
go through `pinned_pool_manager`, whose connections resolve the name once,
check every address and connect to the checked one: no second lookup can
answer differently between the check and the connection.
"""

import ipaddress
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NameResolutionError, NewConnectionError


def non_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Loopback, private, link-local, shared (CGNAT), multicast, reserved or unspecified,
    also when an IPv4 address hides inside an IPv6 one (`::ffff:127.0.0.1`, 6to4)."""
    embedded = getattr(address, "ipv4_mapped", None) or getattr(address, "sixtofour", None)
    if embedded is not None and non_public(embedded):
        return True
    return (not address.is_global or address.is_private or address.is_loopback
            or address.is_link_local or address.is_multicast or address.is_reserved
            or address.is_unspecified)


def _refusal(host: str, address) -> str:
    return (f"Host {host!r} resolves to a non-public address ({address}); "
            "set WEBHOOK_ALLOW_PRIVATE=true to allow it.")


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
        if non_public(address):
            return _refusal(parts.hostname, address)
    return None


class _PinnedConnection:
    """Resolve once, refuse non-public addresses, connect to the address that was checked.

    The host name itself is kept for the `Host` header, TLS SNI and certificate checks.
    """

    allow_private: Callable[[], bool] = staticmethod(lambda: False)

    def _new_conn(self):
        if self.allow_private():
            return super()._new_conn()
        name = self._dns_host
        try:
            infos = socket.getaddrinfo(name.strip("[]"), self.port, proto=socket.IPPROTO_TCP)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        addresses = [info[4][0] for info in infos]
        for address in addresses:
            if non_public(ipaddress.ip_address(address.split("%")[0])):
                raise NewConnectionError(self, _refusal(name, address))
        self._dns_host = addresses[0]
        try:
            return super()._new_conn()
        finally:
            self._dns_host = name


def pinned_pool_manager(allow_private: Callable[[], bool], **kwargs) -> urllib3.PoolManager:
    """A PoolManager that connects only to public addresses (unless `allow_private()`),
    checked at connect time against the address actually connected to."""
    attrs = {"allow_private": staticmethod(allow_private)}
    http = type("PinnedHTTPConnection", (_PinnedConnection, HTTPConnection), attrs)
    https = type("PinnedHTTPSConnection", (_PinnedConnection, HTTPSConnection), attrs)
    manager = urllib3.PoolManager(**kwargs)
    manager.pool_classes_by_scheme = {
        "http": type("PinnedHTTPConnectionPool", (HTTPConnectionPool,), {"ConnectionCls": http}),
        "https": type("PinnedHTTPSConnectionPool", (HTTPSConnectionPool,), {"ConnectionCls": https}),
    }
    return manager
