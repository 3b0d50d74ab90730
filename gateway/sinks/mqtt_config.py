"""Configuration of the MQTT sink (pydantic v2; every error names its field)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator

from gateway.plugins import SinkConfigBase

__all__ = ["BrokerConfig", "MqttConfig", "MqttTlsConfig"]


class MqttTlsConfig(BaseModel):
    """TLS to the broker. No files means the system's CA store and no client certificate."""

    model_config = ConfigDict(extra="forbid")

    ca_file: Path | None = None
    """CA bundle that signed the broker's certificate."""
    cert_file: Path | None = None
    """Client certificate, for brokers that authenticate clients by certificate."""
    key_file: Path | None = Field(default=None, validate_default=True)
    """Private key of ``cert_file``: both or neither."""
    insecure: bool = False
    """Skip the broker hostname check (the certificate chain is still verified)."""

    @field_validator("key_file")
    @classmethod
    def _cert_and_key_together(cls, key_file: Path | None, info: ValidationInfo) -> Path | None:
        if "cert_file" not in info.data:
            return key_file  # cert_file failed its own validation and is reported there
        if (info.data["cert_file"] is None) != (key_file is None):
            raise ValueError("cert_file and key_file go together: set both or neither")
        return key_file


class BrokerConfig(SinkConfigBase):
    """How a sink reaches its MQTT broker (the MQTT and the Sparkplug sinks alike)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=1883, ge=1, le=65535)
    client_id: str | None = Field(default=None, min_length=1)
    """MQTT client id; None means ``{gateway id}.{sink name}``, unique per gateway and sink."""
    username: str | None = None
    password: SecretStr | None = None
    tls: MqttTlsConfig | None = None
    max_inflight: int | None = Field(default=None, ge=1, le=65535)
    """QoS 1/2 messages sent and not yet acknowledged, at most: a link carries about this many
    per round trip. None: with MQTT 5 the broker's Receive Maximum (what it says it takes),
    with 3.1.1 20, which brokers accept by default (Mosquitto's max_inflight_messages). More
    than the broker takes is refused, and a 3.1.1 broker may acknowledge and drop them (seen
    with Mosquitto); with MQTT 5 a configured value is never above the Receive Maximum."""
    keepalive: int = Field(default=30, ge=5, le=3600)
    """Seconds between pings when idle; a dead connection is noticed within ~1.5x this."""
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    publish_timeout: float = Field(default=10.0, gt=0)
    """Seconds to wait for the broker's acknowledgements of one write (and for CONNACK)."""
    reconnect_min: float = Field(default=0.5, gt=0)
    """Seconds: first reconnect delay; later ones grow exponentially with full jitter."""
    reconnect_max: float = Field(default=30.0, gt=0)
    """Seconds: the longest reconnect delay."""

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol_as_text(cls, value: object) -> object:
        # YAML reads `protocol: 5` as an int; it means the same as "5".
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value

    @field_validator("password")
    @classmethod
    def _password_needs_username(
        cls, password: SecretStr | None, info: ValidationInfo
    ) -> SecretStr | None:
        if password is not None and "username" in info.data and info.data["username"] is None:
            raise ValueError("a password needs a username")
        return password

    @field_validator("reconnect_max")
    @classmethod
    def _max_not_below_min(cls, reconnect_max: float, info: ValidationInfo) -> float:
        reconnect_min = info.data.get("reconnect_min")
        if reconnect_min is not None and reconnect_max < reconnect_min:
            raise ValueError(f"must be at least reconnect_min ({reconnect_min})")
        return reconnect_max


class MqttConfig(BrokerConfig):
    """Where and how the MQTT sink publishes."""

    type: Literal["mqtt"] = "mqtt"
    qos: Literal[0, 1, 2] = 1
    """QoS of telemetry and status messages (and of the last will)."""
    topic_prefix: str = Field(default="gateway", min_length=1)

    @field_validator("topic_prefix")
    @classmethod
    def _valid_prefix(cls, prefix: str) -> str:
        if "+" in prefix or "#" in prefix:
            raise ValueError("must not contain the MQTT wildcards '+' or '#'")
        if prefix.startswith("/") or prefix.endswith("/"):
            raise ValueError("must not start or end with '/'")
        return prefix
