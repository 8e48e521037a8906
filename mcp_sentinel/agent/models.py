"""Model providers: the ``openai`` section turned into openai-agents ``Model`` objects.

One ``AsyncOpenAI`` client is shared by every card (it owns the connection pool). Any
OpenAI-compatible endpoint works through ``openai.base_url`` (Ollama, vLLM, a LiteLLM proxy);
the model name is always set explicitly, so the SDK never substitutes a default of its own.
"""

from __future__ import annotations

from collections.abc import Callable

from agents import Model, OpenAIChatCompletionsModel, OpenAIResponsesModel
from openai import AsyncOpenAI

from mcp_sentinel.config import OpenAISettings

# Local OpenAI-compatible servers ignore the key, but the client refuses to start without one.
_PLACEHOLDER_KEY = "sentinel-no-key"


class ModelFactory:
    """Builds (and caches) one ``Model`` per model name. Owns the client; ``aclose`` closes it."""

    def __init__(
        self,
        settings: OpenAISettings,
        *,
        wrap: Callable[[Model], Model] | None = None,
        require_credentials: bool = True,
    ) -> None:
        """``wrap`` decorates every model built (replay records or replaces them with it);
        without ``require_credentials`` a missing key is not a problem (a cassette needs none).
        """
        self._settings = settings
        self._wrap = wrap
        key = settings.api_key.get_secret_value() if settings.api_key else ""
        self.missing_credentials: str | None = None
        if require_credentials and not key and settings.base_url is None:
            self.missing_credentials = (
                "openai.api_key is not set (and no openai.base_url for a local server): "
                "set OPENAI_API_KEY or SENTINEL__OPENAI__API_KEY"
            )
        self._client = AsyncOpenAI(
            api_key=key or _PLACEHOLDER_KEY,
            base_url=settings.base_url,
            timeout=settings.timeout_seconds,
            max_retries=settings.max_retries,
        )
        self._models: dict[str, Model] = {}

    @property
    def client(self) -> AsyncOpenAI:
        return self._client

    def model(self, name: str | None = None) -> tuple[str, Model]:
        """The model called ``name`` (default: ``openai.model``), with its name."""
        model_name = name or self._settings.model
        if model_name not in self._models:
            model: Model
            if self._settings.api == "responses":
                model = OpenAIResponsesModel(model=model_name, openai_client=self._client)
            else:
                model = OpenAIChatCompletionsModel(model=model_name, openai_client=self._client)
            self._models[model_name] = self._wrap(model) if self._wrap else model
        return model_name, self._models[model_name]

    async def aclose(self) -> None:
        await self._client.close()
