"""What a delivery tells a client: the one list of message kinds (docs/PROTOCOL.md section 2).

The router names the kind in every ``Deliver``; the worker's debounce holds
back the first three and sends custom messages at once.
"""

from __future__ import annotations

import enum
from typing import Final


class MessageKind(enum.IntEnum):
    """The message kinds; the values index per-kind tables and travel over IPC."""

    FILE = 0
    ACTIVITY = 1
    NOTIFICATION = 2
    CUSTOM = 3

    @property
    def label(self) -> str:
        """The ``type`` label of the metrics (``file``, ``activity``...)."""
        return self.name.lower()


#: The kinds the per-connection debounce holds back, in the order of sends within one poll.
DEBOUNCED_KINDS: Final = (MessageKind.FILE, MessageKind.ACTIVITY, MessageKind.NOTIFICATION)
