"""Bearer tokens with three roles: ``viewer`` reads, ``operator`` also sets values on devices
(write-back), ``admin`` also changes the configuration (devices, profiles).

401 when the token is missing or unknown, 403 when it is known but its role may not do this.
Tokens are compared in constant time (as SHA-256 digests, so lengths never leak either).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Literal

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.api.config import ApiToken

__all__ = ["Role", "TokenBook", "require"]

Role = Literal["viewer", "operator", "admin"]
_RANK: dict[str, int] = {"viewer": 0, "operator": 1, "admin": 2}


class TokenBook:
    def __init__(self, tokens: list[ApiToken]) -> None:
        self.generated: str | None = None
        if not tokens:
            self.generated = secrets.token_urlsafe(24)
            entries = [(self.generated, "admin", "generated")]
        else:
            entries = [(t.token.get_secret_value(), t.role, t.name) for t in tokens]
        self._entries = [(_digest(token), role, name) for token, role, name in entries]

    def role_of(self, token: str) -> Role | None:
        holder = self.holder_of(token)
        return None if holder is None else holder[0]

    def holder_of(self, token: str) -> tuple[Role, str] | None:
        """The token's role and its name in the config (who it is, for the audit)."""
        digest = _digest(token)
        found: tuple[Role, str] | None = None
        for known, role, name in self._entries:
            # No early exit: every comparison is made, whatever matches.
            if hmac.compare_digest(known, digest):
                found = (role, name)  # type: ignore[assignment]
        return found


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


_bearer = HTTPBearer(auto_error=False, description="An API token from the gateway's config")


def require(role: Role) -> Callable[..., Coroutine[Any, Any, Role]]:
    async def check(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Role:
        book: TokenBook = request.app.state.tokens
        if credentials is None:
            raise HTTPException(401, "a bearer token is required", {"WWW-Authenticate": "Bearer"})
        holder = book.holder_of(credentials.credentials)
        if holder is None:
            raise HTTPException(401, "unknown token", {"WWW-Authenticate": "Bearer"})
        granted, request.state.caller = holder
        if _RANK[granted] < _RANK[role]:
            raise HTTPException(403, f"this needs an {role} token; this one is a {granted}'s")
        return granted

    return check
