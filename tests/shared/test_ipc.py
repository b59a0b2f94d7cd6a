"""IPC framing and message codecs, fed bytes."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared import ipc
from shared.errors import FrameError
from shared.messages import MessageKind
from shared.statistics import WorkerStatistics

MESSAGES: list[ipc.Message] = [
    ipc.Hello(3, 1234, {"alice": 2, "bob": 1}),
    ipc.Release("alice"),
    ipc.ConsumeToken(8, "t" * 32),
    ipc.Stats(WorkerStatistics(active_connections=2, messages_sent=[3, 0, 1, 0])),
    ipc.Deliver(("a", "b"), MessageKind.FILE, (1, 2**63), None, 12.5),
    ipc.Deliver(("a",), MessageKind.FILE),
    ipc.Deliver(("a",), MessageKind.CUSTOM, None, 'type {"a":1}', 1.0),
    ipc.Status(True, 10, 3),
    ipc.Control(ipc.ControlAction.LOG_LEVEL, "debug"),
    ipc.CheckLogin(10, "alice", "app-password", "10.0.0.1, 127.0.0.1"),
    ipc.LoginResult(10, "alice", ""),
    ipc.LoginResult(11, None, "Invalid credentials"),
    ipc.HttpQuery(12, "GET", "/test/cookie", "token"),
    ipc.HttpAnswer(12, 200, "42"),
]


def test_login_check_never_shows_the_password() -> None:
    assert "app-password" not in repr(ipc.CheckLogin(1, "alice", "app-password", ""))


def test_every_message_round_trips() -> None:
    stream = b"".join(ipc.encode(m) for m in MESSAGES)
    assert ipc.FrameDecoder().feed(stream) == MESSAGES


def test_a_template_addressed_to_users_encodes_as_that_deliver() -> None:
    template = ipc.Deliver((), MessageKind.FILE, (4, 5), None, 2.5)
    expected = ipc.Deliver(("a", "b"), MessageKind.FILE, (4, 5), None, 2.5)
    assert ipc.encode_deliver_to(["a", "b"], template) == ipc.encode(expected)


def test_a_failed_encode_leaves_nothing_behind_for_the_next() -> None:
    # The packer is shared by every encode in a process: a message it cannot pack
    # must not leave half a body in its buffer for the next frame.
    bad = ipc.Stats(WorkerStatistics(debounce_base_seconds=object()))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ipc.encode(bad)
    assert ipc.FrameDecoder().feed(ipc.encode(MESSAGES[0])) == [MESSAGES[0]]


def test_frames_split_at_every_byte_boundary() -> None:
    stream = b"".join(ipc.encode(m) for m in MESSAGES)
    decoder = ipc.FrameDecoder()
    received: list[ipc.Message] = []
    for i in range(len(stream)):
        received += decoder.feed(stream[i : i + 1])
    assert received == MESSAGES
    assert decoder.buffered == 0


def test_oversized_frame_is_refused_before_its_body_arrives() -> None:
    decoder = ipc.FrameDecoder(max_frame_size=100)
    with pytest.raises(FrameError, match="exceeds"):
        decoder.feed(ipc.HEADER.pack(101))


@pytest.mark.parametrize(
    "body",
    [
        msgpack.packb({"not": "a list"}),
        msgpack.packb([]),
        msgpack.packb([999, 1]),
        msgpack.packb([ipc.Tag.CONSUME_TOKEN, "not-an-int", "token"]),
        msgpack.packb([ipc.Tag.RELEASE]),
        msgpack.packb([ipc.Tag.DELIVER, ["a"], 99, None, None, 0.0]),
        msgpack.packb([ipc.Tag.DELIVER, "a", 0, None, None, 0.0]),
        msgpack.packb([ipc.Tag.DELIVER, ["a", 5], 0, None, None, 0.0]),
        msgpack.packb([ipc.Tag.DELIVER, ["a"], 3, None, b"not text", 0.0]),
        msgpack.packb([ipc.Tag.STATS, [1, 2]]),
        msgpack.packb([ipc.Tag.HELLO, 1, 2, {"u": "many"}]),
        msgpack.packb([ipc.Tag.STATS, {"x": "y"}]),
        b"\xc1",  # never-used msgpack byte
    ],
)
def test_malformed_bodies_raise_frame_error(body: bytes) -> None:
    with pytest.raises(FrameError):
        ipc.FrameDecoder().feed(ipc.HEADER.pack(len(body)) + body)


@given(st.binary(max_size=512))
def test_arbitrary_bytes_raise_only_frame_error(data: bytes) -> None:
    decoder = ipc.FrameDecoder(max_frame_size=256)
    try:
        for message in decoder.feed(data):
            assert isinstance(message, ipc.Message)
    except FrameError:
        pass


@given(
    st.lists(
        st.one_of(st.integers(-(2**63), 2**64 - 1), st.text(), st.none(), st.binary(), st.floats()),
        max_size=8,
    )
)
def test_arbitrary_msgpack_arrays_raise_only_frame_error(items: list[object]) -> None:
    body = msgpack.packb(items, use_bin_type=True)
    with contextlib.suppress(FrameError):
        ipc.FrameDecoder().feed(ipc.HEADER.pack(len(body)) + body)
