"""Configuration of the MQTT sink (pydantic v2; every error names its field)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gateway.plugins import SinkConfigBase

__all__ = ["BrokerConfig", "MqttConfig", "MqttTlsConfig", "parse_address"]


def parse_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[v6 address]:port``) → (host, port); ValueError saying what is wrong."""
    host, colon, port_text = address.rpartition(":")
    if not colon or not host:
        raise ValueError("expected host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or (":" in host and not address.startswith("[")):
        raise ValueError("expected host:port ([address]:port for IPv6)")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"port {port_text!r} is not 1..65535")
    return host, int(port_text)


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
    brokers: list[str] = Field(default_factory=list, max_length=32)
    """The nodes of a broker cluster, ``host:port`` each (``[v6 address]:port``), instead of
    ``host`` and ``port``: a lost connection goes on with the next node (see
    mqtt_session.keep_connected). Every node must serve the same topics and sessions."""
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

    @field_validator("brokers")
    @classmethod
    def _valid_addresses(cls, brokers: list[str]) -> list[str]:
        for index, address in enumerate(brokers):
            try:
                parse_address(address)
            except ValueError as exc:
                raise ValueError(f"brokers[{index}] {address!r}: {exc}") from None
        if len({a.casefold() for a in brokers}) != len(brokers):
            raise ValueError("a broker is listed twice")
        return brokers

    @model_validator(mode="after")
    def _brokers_or_host(self) -> BrokerConfig:
        if self.brokers and {"host", "port"} & self.model_fields_set:
            raise ValueError("brokers replaces host and port: set one or the other")
        return self

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The broker nodes to try, in order."""
        if self.brokers:
            return [parse_address(address) for address in self.brokers]
        return [(self.host, self.port)]

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
