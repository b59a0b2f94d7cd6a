"""Our server frames, checked against the websockets package's own frame parser."""

from __future__ import annotations

import pytest
from websockets.frames import Close, Frame, Opcode
from websockets.streams import StreamReader

from gateway import frames


def parse(data: bytes) -> Frame:
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        result: Frame = done.value
        return result
    raise AssertionError("incomplete frame")


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 100_000])
def test_text_frames_of_every_length_form(size: int) -> None:
    text = "é" * (size // 2) + "x" * (size % 2)
    parsed = parse(frames.text_frame(text))
    assert parsed.opcode is Opcode.TEXT and parsed.fin
    assert parsed.data.decode() == text


def test_control_frames() -> None:
    assert parse(frames.ping_frame(b"1234")).opcode is Opcode.PING
    assert parse(frames.pong_frame(b"1234")).data == b"1234"
    close = parse(frames.close_frame(1001, "server shutting down"))
    assert Close.parse(close.data) == Close(1001, "server shutting down")
    assert len(frames.close_frame(1000, "x" * 500)) <= 2 + 125
