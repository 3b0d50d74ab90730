"""Configuration of the Sparkplug B sink (pydantic v2; every error names its field)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from gateway.sinks.mqtt_config import BrokerConfig

__all__ = ["SparkplugConfig", "SparkplugId"]

SparkplugId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^/+#\x00-\x1f]+$")]
"""A group, edge node or host id: one MQTT topic level (no '/', '+' or '#')."""


class SparkplugConfig(BrokerConfig):
    """The gateway as a Sparkplug B 3.0 edge node; every gateway device is a Sparkplug device."""

    type: Literal["sparkplug"] = "sparkplug"
    group_id: SparkplugId | None = None
    """The Sparkplug group; None means the gateway id."""
    edge_node_id: SparkplugId | None = None
    """The edge node id; None means the gateway id."""
    primary_host_id: SparkplugId | None = None
    """Publish only while this host application's ``spBv1.0/STATE/{id}`` says it is online;
    meanwhile the outbox keeps the data, published afterwards as historical."""
