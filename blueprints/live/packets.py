"""The Socket.IO packet class of the console: JSON text only.

python-socketio checks every value of every outgoing message for ``bytes`` (to send
them as binary attachments), walking it item by item in Python: for a batch of 20,000
output lines that is 20,000 calls per message, a measurable share of a chatty job's
CPU. The console never sends bytes (events are JSON from the database), so outgoing
packets skip the walk. Incoming packets are decoded as before: a client's binary
attachments are announced in the packet header, not found by this check.
"""

from __future__ import annotations

from typing import Any

from socketio.packet import Packet


class TextPacket(Packet):
    """A packet whose data is known to hold no bytes."""

    @classmethod
    def data_is_binary(cls, data: Any) -> bool:
        return False
