"""Checking a webhook caller's credentials, in constant time."""

from __future__ import annotations

import base64
import binascii
import hmac

from mcp_sentinel.settings_base import BasicAuth, BearerAuth, NoAuth


class RequestAuthenticator:
    """Checks the ``Authorization`` header against the configured credentials.

    Comparisons use ``hmac.compare_digest`` over the whole secret, and both the username and
    the password are always compared, so the time taken says nothing about how much matched.
    """

    def __init__(self, auth: BearerAuth | BasicAuth | NoAuth) -> None:
        self._auth = auth
        self._bearer = (
            auth.token.get_secret_value().encode() if isinstance(auth, BearerAuth) else b""
        )
        self._user = auth.username.encode() if isinstance(auth, BasicAuth) else b""
        self._password = (
            auth.password.get_secret_value().encode() if isinstance(auth, BasicAuth) else b""
        )

    @property
    def challenge(self) -> str | None:
        """The ``WWW-Authenticate`` value to send with a 401, or None without auth."""
        if isinstance(self._auth, BearerAuth):
            return 'Bearer realm="sentinel"'
        if isinstance(self._auth, BasicAuth):
            return 'Basic realm="sentinel", charset="UTF-8"'
        return None

    def allows(self, authorization: str | None) -> bool:
        if isinstance(self._auth, NoAuth):
            return True
        if not authorization:
            return False
        scheme, _, credentials = authorization.strip().partition(" ")
        credentials = credentials.strip()
        if isinstance(self._auth, BearerAuth):
            return scheme.lower() == "bearer" and hmac.compare_digest(
                credentials.encode(), self._bearer
            )
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(credentials, validate=True)
        except (binascii.Error, ValueError):
            return False
        user, separator, password = decoded.partition(b":")
        user_ok = hmac.compare_digest(user, self._user)
        password_ok = hmac.compare_digest(password, self._password)
        return bool(separator) and user_ok and password_ok
