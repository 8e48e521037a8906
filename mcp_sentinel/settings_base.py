"""The base of every config section: unknown keys are errors, so a typo is reported."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class Section(BaseModel):
    """A config section. ``extra="forbid"``: an unknown key is named as a problem."""

    model_config = ConfigDict(extra="forbid")


class BearerAuth(Section):
    """HTTP ``Authorization: Bearer <token>``."""

    type: Literal["bearer"]
    token: SecretStr = Field(min_length=1)


class BasicAuth(Section):
    """HTTP basic credentials."""

    type: Literal["basic"]
    username: str = Field(min_length=1)
    password: SecretStr = Field(min_length=1)


class NoAuth(Section):
    type: Literal["none"]


HttpAuth = Annotated[BearerAuth | BasicAuth | NoAuth, Field(discriminator="type")]
"""Credentials for HTTP: the webhook receiver checks them, the pollers send them."""
