"""The base of every config section: unknown keys are errors, so a typo is reported."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A config section. ``extra="forbid"``: an unknown key is named as a problem."""

    model_config = ConfigDict(extra="forbid")
