"""Settings of the HTTP control plane: where it listens and who may use it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

__all__ = ["ApiConfig", "ApiToken"]


class ApiToken(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64, description="Who holds it (for the logs)")
    token: SecretStr = Field(description="At least 16 characters; put it in the environment")
    role: Literal["admin", "viewer"] = "viewer"

    @field_validator("token")
    @classmethod
    def _long_enough(cls, token: SecretStr) -> SecretStr:
        if len(token.get_secret_value()) < 16:
            raise ValueError("at least 16 characters")
        return token


class ApiConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535, description="0 picks a free port")
    tokens: list[ApiToken] = Field(
        default_factory=list,
        description="Bearer tokens; with none, an admin token is generated and logged at start",
    )
