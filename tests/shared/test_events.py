"""Redis payloads decoded into typed events, and every way they can be bad."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared import events as ev
from shared.errors import EventError


@pytest.mark.parametrize(
    ("channel", "payload", "expected"),
    [
        ("notify_storage_update", b'{"storage": 10, "path": "files/a.txt", "file_id": 5}',
         ev.StorageUpdate(10, "files/a.txt", 5)),
        ("notify_storage_update", b'{"storage": 4294967295, "path": "", "file_id": 18446744073709551615}',
         ev.StorageUpdate(2**32 - 1, "", 2**64 - 1)),
        ("notify_group_membership_update", b'{"user": "u", "group": "g"}', ev.GroupUpdate("u", "g")),
        ("notify_user_share_created", b'{"user": "u"}', ev.ShareCreate("u")),
        ("notify_activity", b'{"user": "u"}', ev.Activity("u")),
        ("notify_notification", b'{"user": "u"}', ev.Notification("u")),
        ("notify_custom", b'{"user": "u", "message": "t"}', ev.Custom("u", "t", None)),
        ("notify_custom", b'{"user": "u", "message": "t", "body": null}', ev.Custom("u", "t", None)),
        ("notify_custom", b'{"user": "u", "message": "t", "body": {"z": 1, "a": "\\u00e9"}}',
         ev.Custom("u", "t", '{"a":"\u00e9","z":1}')),
        ("notify_custom", b'{"user": "u", "message": "t", "body": [1, 2]}', ev.Custom("u", "t", "[1,2]")),
        ("notify_pre_auth", b'{"user": "u", "token": "abc"}', ev.PreAuth("u", "abc")),
        ("notify_test_cookie", b"123456", ev.TestCookie(123456)),
        ("notify_config", b'{"log_spec": "debug"}', ev.LogSpec("debug")),
        ("notify_config", b'"log_restore"', ev.LogSpec(None)),
        ("notify_query", b'"metrics"', ev.Query("metrics")),
        ("notify_signal", b'"reset"', ev.Signal("reset")),
    ],
)  # fmt: skip
def test_valid_payloads(channel: str, payload: bytes, expected: ev.Event) -> None:
    assert ev.decode_event(channel, payload) == expected


@pytest.mark.parametrize(
    ("channel", "payload"),
    [
        ("notify_unknown", b'{"user": "u"}'),
        ("notify_activity", b"not json"),
        ("notify_activity", b"\xff\xfe"),
        ("notify_activity", b'["u"]'),
        ("notify_activity", b'{"user": 5}'),
        ("notify_activity", b'{"user": ""}'),
        ("notify_activity", b'{"name": "u"}'),
        ("notify_storage_update", b'{"storage": -1, "path": "p", "file_id": 1}'),
        ("notify_storage_update", b'{"storage": 4294967296, "path": "p", "file_id": 1}'),
        ("notify_storage_update", b'{"storage": 1, "path": "p", "file_id": 18446744073709551616}'),
        ("notify_storage_update", b'{"storage": "1", "path": "p", "file_id": 1}'),
        ("notify_storage_update", b'{"storage": true, "path": "p", "file_id": 1}'),
        ("notify_storage_update", b'{"storage": 1, "file_id": 1}'),
        ("notify_storage_update", b'{"storage": 1, "path": 7, "file_id": 1}'),
        ("notify_custom", b'{"user": "u"}'),
        ("notify_custom", b'{"user": "u", "message": ""}'),
        ("notify_pre_auth", b'{"user": "u"}'),
        ("notify_test_cookie", b"-5"),
        ("notify_test_cookie", b'"12"'),
        ("notify_test_cookie", b"4294967296"),
        ("notify_config", b'{"log_spec": 3}'),
        ("notify_config", b'"log_everything"'),
        ("notify_query", b'"status"'),
        ("notify_signal", b'"stop"'),
        ("notify_activity", b"[" * 100_000),
        # JSON escapes of lone surrogates: valid JSON, not sendable as UTF-8.
        ("notify_custom", b'{"user": "u", "message": "m", "body": "\\ud800"}'),
        ("notify_custom", b'{"user": "u", "message": "\\udfff"}'),
        ("notify_activity", b'{"user": "\\ud800"}'),
        ("notify_pre_auth", b'{"user": "u", "token": "\\ud83d"}'),
        ("notify_storage_update", b'{"storage": 1, "path": "\\ud800", "file_id": 1}'),
        ("notify_group_membership_update", b'{"user": "u", "group": "\\ud800"}'),
    ],
)
def test_invalid_payloads_raise_event_error_naming_the_channel(
    channel: str, payload: bytes
) -> None:
    with pytest.raises(EventError) as info:
        ev.decode_event(channel, payload)
    assert info.value.channel == channel


def test_huge_path_and_payload_are_refused() -> None:
    path = "x" * (ev.MAX_PATH_LENGTH + 1)
    with pytest.raises(EventError, match="path"):
        ev.decode_event(
            "notify_storage_update", f'{{"storage":1,"path":"{path}","file_id":1}}'.encode()
        )
    with pytest.raises(EventError, match="larger"):
        ev.decode_event("notify_custom", b" " * (ev.MAX_PAYLOAD_SIZE + 1))


@given(st.sampled_from(ev.CHANNELS), st.binary(max_size=256))
def test_arbitrary_bytes_raise_only_event_error(channel: str, payload: bytes) -> None:
    with contextlib.suppress(EventError):
        ev.decode_event(channel, payload)


@given(st.sampled_from(ev.CHANNELS), st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
))  # fmt: skip
def test_arbitrary_json_raises_only_event_error(channel: str, value: object) -> None:
    import json

    with contextlib.suppress(EventError):
        ev.decode_event(channel, json.dumps(value).encode())


def test_a_surrogate_pair_escape_is_a_valid_character() -> None:
    event = ev.decode_event(
        "notify_custom", b'{"user": "u", "message": "m", "body": "\\ud83d\\ude00"}'
    )
    assert isinstance(event, ev.Custom) and event.body == '"\U0001f600"'
