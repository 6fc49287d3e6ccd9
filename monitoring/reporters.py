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
from dataclasses import dataclass, field

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


def client_address(headers: dict[str, str], peer: str | None) -> str:
    """The client as nginx saw it (X-Real-IP, set by the page's nginx from the real address), else the peer."""
    real = headers.get("x-real-ip", "")
    return real if real and printable(real, 100) else (peer or "")


@dataclass
class RateLimit:
    """A token bucket per client: ``rate`` reports a minute, ``burst`` at once; 0 turns it off."""

    rate: float
    burst: int
    buckets: OrderedDict = field(default_factory=OrderedDict)  # client -> (tokens, last time)

    def wait(self, client: str, now: float) -> float:
        """0 when ``client`` may report now (and it is counted), else the seconds until it may."""
        if self.rate <= 0:
            return 0.0
        per_second = self.rate / 60
        tokens, last = self.buckets.pop(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * per_second)
        if tokens >= 1:
            self.buckets[client] = (tokens - 1, now)
            wait = 0.0
        else:
            self.buckets[client] = (tokens, now)
            wait = (1 - tokens) / per_second
        while len(self.buckets) > MAX_CLIENTS:
            self.buckets.popitem(last=False)
        return wait
