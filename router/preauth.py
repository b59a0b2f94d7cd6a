"""Pre-auth tokens: published by Nextcloud, valid 15 s, each usable exactly once.

Kept in the router only, so a token works once across every worker.
"""

from __future__ import annotations

from collections import deque

TOKEN_LIFETIME = 15.0
# Bounds memory if Nextcloud (or someone with Redis access) floods tokens.
MAX_TOKENS = 100_000


class TokenStore:
    __slots__ = ("_expiry_order", "_lifetime", "_tokens")

    def __init__(self, lifetime: float = TOKEN_LIFETIME) -> None:
        self._lifetime = lifetime
        self._tokens: dict[str, tuple[str, float]] = {}
        # Tokens all live equally long, so insertion order is expiry order.
        self._expiry_order: deque[tuple[float, str]] = deque()

    def add(self, token: str, user: str, now: float) -> None:
        self.expire(now)
        if len(self._tokens) >= MAX_TOKENS:
            _, oldest = self._expiry_order.popleft()
            self._tokens.pop(oldest, None)
        expires = now + self._lifetime
        self._tokens[token] = (user, expires)
        self._expiry_order.append((expires, token))

    def consume(self, token: str, now: float) -> str | None:
        """The user of ``token`` if it is known and fresh; it is forgotten either way."""
        entry = self._tokens.pop(token, None)
        if entry is None or entry[1] <= now:
            return None
        return entry[0]

    def expire(self, now: float) -> None:
        order = self._expiry_order
        while order and order[0][0] <= now:
            expires, token = order.popleft()
            entry = self._tokens.get(token)
            if entry is not None and entry[1] == expires:
                del self._tokens[token]

    def __len__(self) -> int:
        return len(self._tokens)
