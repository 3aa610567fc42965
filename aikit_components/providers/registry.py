"""Model names -> providers: ``provider/model`` names, aliases and per-provider settings.

Model names
    ``"openai/gpt-4o-mini"``, ``"anthropic/claude-3-5-haiku-latest"``, ``"ollama/llama3.2"``,
    ``"local/gemma3-270m"``: the part before the first ``/`` names a provider, the rest is the
    provider's own model name (it may contain more slashes: ``"groq/meta-llama/llama-4"``).
    ``"test"`` is the test model (``test/test``, see :mod:`.testing`); ``"scripted/<n>"`` names a
    scripted model registered with :meth:`ModelRegistry.scripted`.

Aliases (``[models.aliases]`` in ``aikit.toml``)
    ``fast = "openai/gpt-4o-mini"``; an alias may name another alias. The built-in alias
    ``default`` is ``"local/gemma3-270m"`` (the offline model) unless ``models.default`` (or an
    alias named ``default``) says otherwise.

Providers (``[providers.<name>]``)
    ``type``        openai | anthropic | ollama | local; defaults to the name for those four, so
                    ``[providers.groq] type = "openai"`` defines an OpenAI-compatible provider.
    ``base_url``    the endpoint (required for a provider that is not one of the four built-ins).
    ``api_key``     the key (a :class:`~aikit_components.config.Secret`); or ``api_key_env``, the
                    environment variable holding it. The default variable is ``<NAME>_API_KEY``
                    (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``, ``GROQ_API_KEY``).
    ``api_key_required``  whether a missing key is an error. Default: true for the openai and
                    anthropic types (and whenever ``api_key_env`` is set), except for a ``base_url``
                    on a loopback/private host (a local vLLM, llama.cpp or LM Studio server).
    ``timeout_s``, ``retries``, ``headers`` (a table of strings): passed to the provider.
    Any other key is passed to the provider's constructor when it accepts a parameter of that name
    (``model_path`` for the local provider, say); otherwise it is listed in
    :attr:`ModelRegistry.warnings`.

A cloud provider without a key fails at first use (:meth:`ModelRegistry.provider`) with a
``ProviderError(kind="auth")`` naming the config key and the environment variable to set. Keys
are read through :meth:`Config.secret` when the provider is built and handed straight to it:
the registry never keeps, logs or shows them.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from ..config import Config, Secret
from ..errors import ConfigError, InvalidArgument, NotFound
from ..operations import Pipeline
from .base import Provider, ProviderError

__all__ = ["BUILTIN_PROVIDERS", "DEFAULT_MODEL", "PROVIDER_TYPES", "ModelRegistry", "TransportFactory"]

log = logging.getLogger("aikit.providers.registry")

#: The offline default model (``default`` alias) unless ``models.default`` says otherwise.
DEFAULT_MODEL = "local/gemma3-270m"

#: provider type -> (module under aikit_components.providers, class name). Imported on first use.
PROVIDER_TYPES: dict[str, tuple[str, str]] = {
    "openai": ("openai", "OpenAIProvider"),
    "anthropic": ("anthropic", "AnthropicProvider"),
    "ollama": ("ollama", "OllamaProvider"),
    "local": ("local", "LocalProvider"),
    "test": ("testing", "TestProvider"),
    "scripted": ("testing", "ScriptedProvider"),
}

#: Providers that exist without any configuration (their type is their name).
BUILTIN_PROVIDERS = ("openai", "anthropic", "ollama", "local", "test", "scripted")

#: Types that take no API key and no endpoint (the offline and the test models).
_KEYLESS_TYPES = frozenset({"local", "test", "scripted"})

#: Types that need an API key unless ``api_key_required = false``.
_KEYED_TYPES = frozenset({"openai", "anthropic"})

#: Setting keys the registry itself interprets (never passed through blindly).
_RESERVED = frozenset({"type", "api_key", "api_key_env", "api_key_required"})

#: Something that makes the httpx transport of one provider: called with the provider's name.
TransportFactory = Callable[[str], "httpx.AsyncBaseTransport | None"]


def _is_local(url: Any) -> bool:
    """True for a base URL on a loopback/private host (a local server: no key by default)."""
    if not isinstance(url, str):
        return False
    try:
        from .http import is_local_url
    except ImportError:  # pragma: no cover - the HTTP plumbing is part of the package
        return False
    return is_local_url(url)


def unknown_provider_message(name: str, known: list[str]) -> str:
    """Why provider ``name`` is unknown: the closest known one ("did you mean openai?") and how to
    define a new one, as valid TOML."""
    import difflib

    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    guess = f"did you mean {close[0]!r}? " if close else ""
    return (f"unknown provider {name!r}; {guess}available providers: {', '.join(known)}. To define it, add to "
            f"aikit.toml:\n  [providers.{name}]\n  type = \"openai\"\n  base_url = \"https://...\"")


def _settings(name: str, table: Any) -> dict[str, Any]:
    """A copy of ``table``, the ``[providers.<name>]`` table read from the config (None: absent)."""
    if table is None:
        return {}
    if not isinstance(table, Mapping):
        raise ConfigError(f"providers.{name} must be a table (type, base_url, api_key_env, ...)",
                          details={"key": f"providers.{name}"})
    return dict(table)


def _reveal(value: Any) -> str:
    return value.reveal() if isinstance(value, Secret) else str(value)


class ModelRegistry:
    """Resolves model names and aliases to providers built from ``[providers.<name>]`` settings.

    ``config``: a :class:`Config` (``None``: :func:`~aikit_components.config.load_config`).
    ``transport``: an optional :data:`TransportFactory` (or one transport for every provider)
    giving each HTTP provider its httpx transport, e.g. a cassette; set it before the first
    provider is built (built providers keep theirs). ``provider_types`` adds or replaces provider
    types: ``{"mytype": factory}``, the factory called with the same keyword arguments as the
    built-in classes. ``pipeline``: the process's operation pipeline, handed to every provider
    (and embedding client) that takes one, so each HTTP request it sends is an operation.
    """

    def __init__(self, config: Config | Mapping[str, Any] | None = None, *,
                 transport: TransportFactory | httpx.AsyncBaseTransport | None = None,
                 provider_types: Mapping[str, Callable[..., Provider]] | None = None,
                 pipeline: Pipeline | None = None) -> None:
        if config is None:
            from ..config import load_config

            config = load_config()
        elif not isinstance(config, Config):
            config = Config(config)
        self.config: Config = config
        self.transport = transport
        self.pipeline = pipeline
        self._types: dict[str, Callable[..., Provider]] = dict(provider_types or {})
        self._providers: dict[str, Provider] = {}
        self._lock = threading.Lock()
        self._aliases: tuple[Config, dict[str, str]] | None = None  # the config read, its aliases
        self._kinds: tuple[Config, dict[str, str]] = (self.config, {})  # the config read, provider -> type
        #: Non-fatal problems found while building providers (unknown settings, ...).
        self.warnings: list[str] = []

    # ---- names ------------------------------------------------------------------------------

    def provider_names(self) -> list[str]:
        """Every provider that can be used: the built-ins, then the configured ones (sorted)."""
        configured = self.config.get("providers", {}) or {}
        extra = sorted(n for n in configured if n not in BUILTIN_PROVIDERS)
        return list(BUILTIN_PROVIDERS) + extra

    @property
    def aliases(self) -> dict[str, str]:
        """Alias -> model name: ``[models.aliases]`` plus ``default``."""
        return dict(self._alias_table())

    def _alias_table(self) -> dict[str, str]:
        """:attr:`aliases`, read once per :class:`Config` (which is read-only): every model call
        expands its model name. Not to be changed by the caller."""
        cached = self._aliases
        if cached is not None and cached[0] is self.config:
            return cached[1]
        table = self.config.get("models.aliases", {}) or {}
        if not isinstance(table, Mapping):
            raise ConfigError(f"models.aliases must be a table of alias = \"provider/model\", got {type(table).__name__}",
                              details={"key": "models.aliases"})
        out: dict[str, str] = {}
        for alias, target in table.items():
            if not isinstance(target, str) or not target:
                raise ConfigError(f"models.aliases.{alias} must be a model name such as \"openai/gpt-4o-mini\"",
                                  details={"key": f"models.aliases.{alias}"})
            out[str(alias)] = target
        if "default" not in out:
            default = self.config.get("models.default", DEFAULT_MODEL)
            if not isinstance(default, str) or not default:
                raise ConfigError("models.default must be a model name such as \"local/gemma3-270m\"",
                                  details={"key": "models.default"})
            out["default"] = default
        self._aliases = (self.config, out)  # only a valid table: an invalid one raises at every use
        return out

    def expand(self, model: str) -> str:
        """The full ``provider/model`` name of a model name or alias (aliases followed)."""
        if not isinstance(model, str) or not model.strip():
            raise NotFound("a model name is required: \"provider/model\" (e.g. openai/gpt-4o-mini) or an alias",
                           details={"aliases": sorted(self.aliases)})
        aliases = self._alias_table()
        name = model.strip()
        seen: list[str] = []
        while name in aliases:
            if name in seen:
                chain = " -> ".join(seen + [name])
                raise ConfigError(f"alias loop in models.aliases: {chain}", details={"key": "models.aliases"})
            seen.append(name)
            name = aliases[name]
        if name == "test":
            return "test/test"
        if "/" not in name:
            via = f" (alias {' -> '.join(seen)})" if seen else ""
            raise NotFound(
                f"unknown model {name!r}{via}: use \"provider/model\" (e.g. openai/gpt-4o-mini) or an alias "
                f"({', '.join(sorted(aliases))}); define aliases under [models.aliases]",
                details={"model": model, "aliases": sorted(aliases)},
            )
        provider, _, rest = name.partition("/")
        if not provider or not rest:
            raise NotFound(f"malformed model name {name!r}: expected \"provider/model\"", details={"model": model})
        return name

    def check(self, model: str) -> str:
        """The full name of ``model`` once its provider is known to exist (not built: no key or
        server needed yet); ``not_found`` with a suggestion otherwise."""
        full = self.expand(model)
        self.provider_type(full.partition("/")[0])
        return full

    def resolve(self, model: str) -> tuple[Provider, str, str]:
        """``(provider, provider's model name, full "provider/model" name)`` for a name or alias."""
        full = self.expand(model)
        provider_name, _, model_name = full.partition("/")
        return self.provider(provider_name), model_name, full

    # ---- providers --------------------------------------------------------------------------

    def settings(self, name: str) -> dict[str, Any]:
        """The ``[providers.<name>]`` table (a copy; secrets stay :class:`Secret`)."""
        return _settings(name, self.config.get(("providers", name), None))

    def provider_type(self, name: str) -> str:
        """The type of provider ``name`` (openai, anthropic, ollama, local or a registered one)."""
        kinds = self._kinds
        if kinds[0] is not self.config:
            kinds = self._kinds = (self.config, {})
        kind = kinds[1].get(name)
        if kind is None:  # once per config (which is read-only): this runs for every agent made
            kind = kinds[1][name] = self._provider_type(name)
        return kind

    def _provider_type(self, name: str) -> str:
        # the [providers.<name>] table read alone (a read of the section copies every provider's table)
        table = self.config.get(("providers", name), None)
        settings = _settings(name, table)
        configured = table is not None
        if not configured and name not in BUILTIN_PROVIDERS:
            raise NotFound(unknown_provider_message(name, self.provider_names()),
                           details={"provider": name, "providers": self.provider_names()})
        kind = settings.get("type", name if name in BUILTIN_PROVIDERS or name in self._types else None)
        known = sorted(set(PROVIDER_TYPES) | set(self._types))
        if kind is None:
            raise ConfigError(
                f"providers.{name} has no type: set type = \"openai\" (an OpenAI-compatible API), "
                f"or one of {', '.join(known)}",
                details={"key": f"providers.{name}.type"},
            )
        if not isinstance(kind, str) or kind not in known:
            raise ConfigError(f"providers.{name}.type must be one of {', '.join(known)}, got {kind!r}",
                              details={"key": f"providers.{name}.type"})
        return kind

    def provider(self, name: str) -> Provider:
        """The provider named ``name``, built on first use and cached (one per name)."""
        cached = self._providers.get(name)
        if cached is not None:
            return cached
        with self._lock:
            cached = self._providers.get(name)
            if cached is None:
                cached = self._build(name)
                self._providers[name] = cached
            return cached

    def _api_key(self, name: str, kind: str, settings: Mapping[str, Any]) -> str | None:
        key = self.config.secret(("providers", name, "api_key"))
        if key:
            return key
        env_name = settings.get("api_key_env")
        if env_name is not None and not isinstance(env_name, str):
            raise ConfigError(f"providers.{name}.api_key_env must be the name of an environment variable",
                              details={"key": f"providers.{name}.api_key_env"})
        variable = env_name or f"{name.upper().replace('-', '_')}_API_KEY"
        value = os.environ.get(variable)
        if value:
            return value
        if "api_key_required" in settings:
            required = settings["api_key_required"]
        else:  # a named variable is expected to be set; local servers (vLLM, LM Studio) take no key
            required = bool(env_name) or (kind in _KEYED_TYPES and not _is_local(settings.get("base_url")))
        if not isinstance(required, bool):
            raise ConfigError(f"providers.{name}.api_key_required must be true or false",
                              details={"key": f"providers.{name}.api_key_required"})
        if not required:
            return None
        if env_name:
            how = (f"the environment variable {variable} (named by providers.{name}.api_key_env) is not set; "
                   f"set it, or set providers.{name}.api_key in aikit.toml")
        else:
            how = (f"set the environment variable {variable}, or providers.{name}.api_key (or api_key_env) "
                   f"in aikit.toml, or AIKIT_PROVIDERS__{name.upper().replace('-', '_')}__API_KEY")
        raise ProviderError(f"no API key for provider {name!r}: {how}", kind="auth", provider=name,
                            details={"config_key": f"providers.{name}.api_key", "env": variable})

    def _factory(self, kind: str) -> Callable[..., Provider]:
        if kind in self._types:
            return self._types[kind]
        module_name, class_name = PROVIDER_TYPES[kind]
        try:
            module = importlib.import_module(f"{__package__}.{module_name}")
        except ImportError as exc:
            raise NotFound(f"the {kind} provider is not available ({exc})", details={"type": kind}) from exc
        return getattr(module, class_name)

    def _transport_for(self, name: str) -> httpx.AsyncBaseTransport | None:
        hook = self.transport
        if hook is None:
            return None
        if isinstance(hook, httpx.AsyncBaseTransport):
            return hook
        return hook(name)

    def _build(self, name: str) -> Provider:
        kind = self.provider_type(name)
        kwargs = self._settings_kwargs(name, kind)
        factory = self._factory(kind)
        kwargs = self._accepted(name, factory, kwargs)
        log.debug("building provider %s (type %s, settings %s)", name, kind,
                  sorted(k for k in kwargs if k != "api_key"))
        return factory(**kwargs)

    def embeddings(self, name: str, model: str) -> Any:
        """An embedding client for ``model`` on provider ``name`` (same settings as its chat
        client): ``OpenAIEmbeddings`` for OpenAI-compatible providers, ``OllamaEmbeddings`` for
        Ollama. The caller closes it (``aclose``)."""
        from .embeddings import OllamaEmbeddings, OpenAIEmbeddings

        kind = self.provider_type(name)
        classes = {"openai": OpenAIEmbeddings, "ollama": OllamaEmbeddings}
        if kind not in classes:
            raise InvalidArgument(f"provider {name!r} (type {kind}) has no embedding endpoint; use an OpenAI-compatible "
                                  "or Ollama provider, or the local model", details={"provider": name, "type": kind})
        kwargs = self._accepted(name, classes[kind], self._settings_kwargs(name, kind))
        return classes[kind](model=model, **kwargs)

    def _settings_kwargs(self, name: str, kind: str) -> dict[str, Any]:
        """Constructor arguments from ``[providers.<name>]``, checked (secrets revealed)."""
        settings = self.settings(name)
        if "base_url" not in settings and name not in BUILTIN_PROVIDERS and kind not in _KEYLESS_TYPES:
            raise ConfigError(f"providers.{name}.base_url is required (the {kind}-compatible endpoint)",
                              details={"key": f"providers.{name}.base_url"})
        kwargs: dict[str, Any] = {"name": name}
        for key, value in settings.items():
            if key in _RESERVED:
                continue
            if key == "base_url":
                if not isinstance(value, str) or not value:
                    raise ConfigError(f"providers.{name}.base_url must be a URL string",
                                      details={"key": f"providers.{name}.base_url"})
            elif key == "timeout_s":
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                    raise ConfigError(f"providers.{name}.timeout_s must be a positive number of seconds",
                                      details={"key": f"providers.{name}.timeout_s"})
            elif key == "retries":
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ConfigError(f"providers.{name}.retries must be a non-negative integer",
                                      details={"key": f"providers.{name}.retries"})
            elif key == "headers":
                if not isinstance(value, Mapping):
                    raise ConfigError(f"providers.{name}.headers must be a table of header = \"value\"",
                                      details={"key": f"providers.{name}.headers"})
                value = {str(k): _reveal(v) for k, v in value.items()}
            elif isinstance(value, Secret):
                value = value.reveal()
            kwargs[key] = value
        api_key = None if kind in _KEYLESS_TYPES else self._api_key(name, kind, settings)
        if api_key is not None:
            kwargs["api_key"] = api_key
        transport = self._transport_for(name)
        if transport is not None:
            kwargs["transport"] = transport
        if self.pipeline is not None:
            kwargs["pipeline"] = self.pipeline
        return kwargs

    def _accepted(self, name: str, factory: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Drop keyword arguments the constructor does not take (recording a warning for settings)."""
        try:
            params = inspect.signature(factory).parameters
        except (TypeError, ValueError):
            return kwargs
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return kwargs
        out = {}
        for key, value in kwargs.items():
            if key in params:
                out[key] = value
            elif key not in ("transport", "api_key", "name", "pipeline"):
                warning = f"providers.{name}.{key}: not a setting of this provider (ignored)"
                if warning not in self.warnings:
                    self.warnings.append(warning)
                    log.warning(warning)
        return out

    def scripted(self, decide: Callable[..., Any]) -> str:
        """Register a scripted model deciding each turn with ``decide(messages, tools)`` (an async
        function, see :mod:`.testing`); its model name, ``"scripted/<n>"``."""
        return self.provider("scripted").add(decide)  # type: ignore[attr-defined]

    # ---- lifecycle --------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close every provider built so far (they are rebuilt on next use)."""
        with self._lock:
            providers = list(self._providers.values())
            # the scripted models live on: their deciders were registered, not configured
            self._providers = {n: p for n, p in self._providers.items() if n == "scripted"}
        for provider in providers:
            try:
                await provider.aclose()
            except Exception:  # closing must not hide the others
                log.exception("closing provider %s failed", getattr(provider, "name", provider))

    def __repr__(self) -> str:
        try:
            aliases: Any = self.aliases
        except ConfigError:
            aliases = "<invalid>"
        return (f"ModelRegistry(providers={self.provider_names()!r}, aliases={aliases!r}, "
                f"built={sorted(self._providers)!r})")
