from __future__ import annotations

from router.preauth import TokenStore


def test_token_is_single_use() -> None:
    store = TokenStore(lifetime=15)
    store.add("t", "alice", now=100)
    assert store.consume("t", now=101) == "alice"
    assert store.consume("t", now=101) is None


def test_token_expires_after_its_lifetime() -> None:
    store = TokenStore(lifetime=15)
    store.add("t", "alice", now=100)
    assert store.consume("t", now=115) is None
    store.add("u", "bob", now=100)
    store.expire(now=116)
    assert len(store) == 0


def test_republished_token_keeps_the_newest_owner_and_expiry() -> None:
    store = TokenStore(lifetime=15)
    store.add("t", "alice", now=100)
    store.add("t", "bob", now=110)
    store.expire(now=116)  # the first entry's expiry passes; the renewed one stays
    assert store.consume("t", now=120) == "bob"
