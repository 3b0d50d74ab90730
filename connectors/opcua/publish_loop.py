"""asyncua's publish loop, with our decoder first (connectors/opcua/fast_publish.py).

asyncua's ``UaSession._publish_loop`` calls ``self.publish(acks)`` for every response and uses
only ``Parameters.SubscriptionId``, ``Parameters.NotificationMessage.NotificationData`` (is there
any?) and ``.SequenceNumber`` (to acknowledge it), then hands ``Parameters`` to the
subscription's callback. :func:`decode_fast` replaces that session's ``publish`` with one that
answers a :class:`FastResult` with those attributes when the fast path decodes the response,
and asyncua's own ``PublishResponse`` otherwise: the callback sees one or the other.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from asyncua import ua
from asyncua.client.ua_session import UaSession
from asyncua.ua.ua_binary import struct_from_binary
from asyncua.ua.uaerrors import UaStructParsingError

from connectors.opcua.fast_publish import FastPublish, decode_publish

__all__ = ["FastResult", "decode_fast"]

log = logging.getLogger(__name__)


class FastResult:
    """A fast-decoded response, shaped as what the publish loop reads of asyncua's."""

    __slots__ = ("NotificationData", "SequenceNumber", "SubscriptionId", "publish")

    def __init__(self, publish: FastPublish) -> None:
        self.publish = publish
        self.SubscriptionId = publish.subscription_id
        self.SequenceNumber = publish.sequence_number
        self.NotificationData = publish.notifications
        """How many: the loop only asks whether there are any (to acknowledge them)."""

    @property
    def Parameters(self) -> FastResult:  # asyncua's attribute names
        return self

    @property
    def NotificationMessage(self) -> FastResult:
        return self


def decode_fast(session: UaSession) -> None:
    """Make ``session``'s publish loop try the fast decoder first."""

    async def publish(acks: Sequence[ua.SubscriptionAcknowledgement]) -> Any:
        request = ua.PublishRequest()
        request.Parameters.SubscriptionAcknowledgements = list(acks)
        data = await session._send_request(request, timeout=0)
        fast = decode_publish(bytes(data))
        if fast is not None:
            return FastResult(fast)
        try:
            return struct_from_binary(ua.PublishResponse, data)
        except Exception as exc:  # what asyncua's own publish does: the loop logs and goes on
            log.exception("error parsing a publish response from the server")
            raise UaStructParsingError from exc

    session.publish = publish  # type: ignore[method-assign]
