"""Who is reporting feedback, and how often they may.

Feedback is untrusted by default: anyone who can use the public page can report a consumption, and
feedback becomes training data (``mlops data ingest --from-feedback``), so each report records the client it
came from and, when it carries a reporter's token, that reporter: ingest screens untrusted rows and lets
trusted ones through. A client may report at most ``rate`` times a minute (after a ``burst``); nginx in front
limits the same way, per address (``limit_req``), and this is the limit that holds without it.
"""

from __future__ import annotations

import hmac
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network

from monitoring.events import ClientError, printable

MAX_CLIENTS = 10_000  # addresses whose buckets are remembered (the least recent go first)


def parse_tokens(text: str | None) -> dict[str, str]:
    """``name:token,name:token`` (the Secret mpg-feedback-tokens, key ``tokens``) -> {token: name}."""
    tokens = {}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        name, sep, token = item.partition(":")
        if not sep or not name or len(token) < 16 or not printable(name, 100):
            raise ValueError(f"reporter tokens: {item[:20]!r}... is not name:token (a token of 16 characters or more)")
        tokens[token] = name
    return tokens


def reporter(tokens: dict[str, str], authorization: str | None) -> str:
    """The reporter an ``Authorization: Bearer <token>`` names ("" without one); an unknown token is a 401."""
    if not authorization:
        return ""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer":
        for known, name in tokens.items():  # compare each in constant time
            if hmac.compare_digest(known.encode(), token.strip().encode()):
                return name
    raise ClientError("Authorization: not a reporter's token (send none to report as anyone)", 401)


def trusted_proxies(cidrs: Iterable[str]) -> tuple[IPv4Network | IPv6Network, ...]:
    """The networks whose X-Real-IP is believed (``--trusted-proxy``); ValueError names a bad one."""
    networks = []
    for cidr in cidrs:
        try:
            networks.append(ip_network(cidr.strip(), strict=False))
        except ValueError as e:
            raise ValueError(f"{cidr!r} is not an address or network (for example 127.0.0.1 or 10.0.0.0/8)") from e
    return tuple(networks)


def client_address(headers: dict[str, str], peer: str | None, proxies: tuple = ()) -> str:
    """The client: X-Real-IP when the peer is a trusted proxy (the page's nginx sets it from the real address),
    else the peer itself. From anyone else the header is the sender's say-so and is ignored: believing it
    would give every forged value an allowance of its own."""
    peer = peer or ""
    real = headers.get("x-real-ip", "")
    if real and printable(real, 100) and _within(peer, proxies):
        return real
    return peer


def _within(address: str, networks: tuple) -> bool:
    try:
        ip = ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


@dataclass
class RateLimit:
    """A token bucket per client: ``rate`` reports a minute, ``burst`` at once; 0 turns it off."""

    rate: float
    burst: int
    buckets: OrderedDict = field(default_factory=OrderedDict)  # client -> (tokens, last time)

    def wait(self, client: str, now: float, count: bool = True) -> float:
        """0 when ``client`` may report now (and, with ``count``, it is counted), else the seconds until it may."""
        if self.rate <= 0:
            return 0.0
        per_second = self.rate / 60
        tokens, last = self.buckets.pop(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * per_second)
        if tokens >= 1:
            self.buckets[client] = (tokens - 1 if count else tokens, now)
            wait = 0.0
        else:
            self.buckets[client] = (tokens, now)
            wait = (1 - tokens) / per_second
        while len(self.buckets) > MAX_CLIENTS:
            self.buckets.popitem(last=False)
        return wait
