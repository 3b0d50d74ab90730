"""Settings of the HTTP control plane: where it listens, who may use it, and its limits."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, FilePath, SecretStr, model_validator

__all__ = ["SHIPPED_TOKENS", "ApiConfig", "ApiTls", "ApiToken"]

SHIPPED_TOKENS = frozenset(
    {
        "change-me-gateway-admin-token",
        "change-me-gateway-operator-token",
        "change-me-gateway-viewer-token",
        "unset-admin-token-see-env",
        "unset-viewer-token-see-env",
    }
)
"""Example values this repository ships (.env.example, the systemd env file, old compose
config): known to everyone, so never accepted as a token."""

_MIN_LENGTH = {"viewer": 16, "operator": 24, "admin": 24}


class ApiToken(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64, description="Who holds it (for the logs)")
    token: SecretStr = Field(
        description="At least 24 characters for operator and admin, 16 for viewer; random (sh"
        " docker/make-env.sh makes them), from the environment"
    )
    role: Literal["viewer", "operator", "admin"] = "viewer"

    @model_validator(mode="after")
    def _strong_enough(self) -> ApiToken:
        token = self.token.get_secret_value()
        if token in SHIPPED_TOKENS or token.startswith("change-me"):
            raise ValueError(
                "token: this is an example value from the repository, known to everyone; set"
                " a random one (sh docker/make-env.sh, or: openssl rand -hex 16)"
            )
        minimum = _MIN_LENGTH[self.role]
        if len(token) < minimum:
            raise ValueError(
                f"token: an {self.role} token needs at least {minimum} characters (has"
                f" {len(token)}); make one with: openssl rand -hex 16"
            )
        return self


class ApiTls(BaseModel):
    """HTTPS for the API and page (or put a reverse proxy in front: see the README)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cert_file: FilePath = Field(description="PEM certificate (chain)")
    key_file: FilePath = Field(description="PEM private key")
    key_password: SecretStr | None = None


class ApiConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535, description="0 picks a free port")
    tokens: list[ApiToken] = Field(
        default_factory=list,
        description="Bearer tokens; with none, an admin token is generated and logged at start",
    )
    tls: ApiTls | None = None
    max_body_kb: int = Field(
        default=1024, ge=1, le=1024 * 1024, description="Larger request bodies are refused (413)"
    )

    @property
    def scheme(self) -> Literal["http", "https"]:
        return "https" if self.tls is not None else "http"

    @property
    def cert_paths(self) -> tuple[Path, Path] | None:
        return None if self.tls is None else (self.tls.cert_file, self.tls.key_file)
