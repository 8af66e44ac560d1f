"""Load notifier's settings from settings.yaml, environment variables and the command line."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_PATH = Path(__file__).with_name("settings.yaml")
ENV_PREFIX = "NOTIFIER_"


class SettingsError(Exception):
    """An invalid setting; the message names the key."""


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 65536
    shutdown_timeout: float = 10.0
    workers: int = 1
    event_loop: str = "auto"


@dataclass(frozen=True)
class RedisSettings:
    url: str = ""
    data_dir: str = "./data"
    key_prefix: str = "notifier:"


@dataclass(frozen=True)
class EventSettings:
    history_size: int = 1000
    max_age_seconds: int = 604800


@dataclass(frozen=True)
class WebSocketSettings:
    allowed_origins: tuple[str, ...] = ()
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    max_buffer_bytes: int = 1048576
    compression: bool = False


@dataclass(frozen=True)
class LoggingSettings:
    level: str = "INFO"


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    events: EventSettings = field(default_factory=EventSettings)
    websocket: WebSocketSettings = field(default_factory=WebSocketSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)


SECTIONS: dict[str, type] = {
    "server": ServerSettings,
    "redis": RedisSettings,
    "events": EventSettings,
    "websocket": WebSocketSettings,
    "logging": LoggingSettings,
}

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
EVENT_LOOPS = ("auto", "asyncio", "uvloop")


def load_settings(
    path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    port: int | None = None,
    workers: int | None = None,
) -> Settings:
    """Build Settings from the YAML file, then NOTIFIER_* variables, then --port and --workers values.

    Raises SettingsError naming the first invalid key.
    """
    config_path = Path(path) if path is not None else DEFAULT_PATH
    values = _read_yaml(config_path)
    _apply_environment(values, os.environ if environ is None else environ)
    if port is not None:
        values.setdefault("server", {})["port"] = port
    if workers is not None:
        values.setdefault("server", {})["workers"] = workers

    sections = {}
    for section_name, section_type in SECTIONS.items():
        section_values = values.get(section_name) or {}
        sections[section_name] = _build_section(section_name, section_type, section_values)
    settings = Settings(**sections)
    _validate(settings)
    return settings


def _read_yaml(path: Path) -> dict[str, dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SettingsError(f"cannot read settings file {path}: {error.strerror}") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SettingsError(f"settings file {path} is not valid YAML: {error}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise SettingsError(f"settings file {path} must hold a mapping of sections")
    for section_name, section_values in loaded.items():
        if section_name not in SECTIONS:
            raise SettingsError(f"unknown settings section {section_name!r} in {path}")
        if section_values is not None and not isinstance(section_values, dict):
            raise SettingsError(f"settings section {section_name!r} must be a mapping")
    return {name: dict(section or {}) for name, section in loaded.items()}


def _apply_environment(values: dict[str, dict[str, Any]], environ: Mapping[str, str]) -> None:
    for variable, raw in environ.items():
        if not variable.startswith(ENV_PREFIX):
            continue
        section_name, key = _split_variable(variable[len(ENV_PREFIX):])
        if section_name is None:
            continue
        # Text settings take the value literally, so a prefix like "app:" stays text.
        default = getattr(SECTIONS[section_name](), key, None)
        if isinstance(default, str) or raw == "":
            parsed: Any = raw
        else:
            try:
                parsed = yaml.safe_load(raw)
            except yaml.YAMLError:
                parsed = raw
        values.setdefault(section_name, {})[key] = parsed


def _split_variable(name: str) -> tuple[str | None, str]:
    """Split SERVER_MAX_BODY_BYTES into ("server", "max_body_bytes"); (None, "") if no section matches."""
    lowered = name.lower()
    for section_name in SECTIONS:
        if lowered.startswith(section_name + "_"):
            return section_name, lowered[len(section_name) + 1:]
    return None, ""


def _build_section(section_name: str, section_type: type, values: dict[str, Any]) -> Any:
    defaults = section_type()
    field_names = {field.name for field in dataclasses.fields(section_type)}
    converted = {}
    for key, value in values.items():
        if key not in field_names:
            raise SettingsError(f"unknown setting {section_name}.{key}")
        converted[key] = _convert(f"{section_name}.{key}", getattr(defaults, key), value)
    return section_type(**converted)


def _convert(key: str, default: Any, value: Any) -> Any:
    """Coerce a YAML value to the type of the setting's default."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise SettingsError(f"setting {key} must be true or false, got {value!r}")
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise SettingsError(f"setting {key} must be a whole number, got {value!r}")
    if isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise SettingsError(f"setting {key} must be a number, got {value!r}")
    if isinstance(default, tuple):
        if value is None or value == "":
            return ()
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return tuple(value)
        raise SettingsError(f"setting {key} must be a list of strings, got {value!r}")
    if value is None:
        return ""
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise SettingsError(f"setting {key} must be a string, got {value!r}")


def _validate(settings: Settings) -> None:
    server, redis, events, websocket = settings.server, settings.redis, settings.events, settings.websocket
    checks = [
        (0 <= server.port <= 65535, f"setting server.port must be 0 to 65535, got {server.port}"),
        (bool(server.host), "setting server.host must not be empty"),
        (server.workers >= 0, f"setting server.workers must be 0 or more, got {server.workers}"),
        (
            server.event_loop in EVENT_LOOPS,
            f"setting server.event_loop must be one of {', '.join(EVENT_LOOPS)}, got {server.event_loop!r}",
        ),
        (
            server.workers == 1 or server.port != 0,
            "setting server.port must not be 0 with several workers, since they share one port",
        ),
        (
            server.max_body_bytes >= 1024,
            f"setting server.max_body_bytes must be at least 1024, got {server.max_body_bytes}",
        ),
        (
            server.shutdown_timeout > 0,
            f"setting server.shutdown_timeout must be positive, got {server.shutdown_timeout}",
        ),
        (
            not redis.url or redis.url.startswith(("redis://", "rediss://", "unix://")),
            f"setting redis.url must start with redis://, rediss:// or unix://, got {hide_password(redis.url)!r}",
        ),
        (
            bool(redis.url or redis.data_dir),
            "setting redis.data_dir must not be empty when redis.url is empty",
        ),
        (
            bool(redis.key_prefix) and not any(character in redis.key_prefix for character in "*?[] \n"),
            f"setting redis.key_prefix must be non-empty, without spaces or glob characters, "
            f"got {redis.key_prefix!r}",
        ),
        (events.history_size >= 1, f"setting events.history_size must be at least 1, got {events.history_size}"),
        (
            events.max_age_seconds >= 1,
            f"setting events.max_age_seconds must be at least 1, got {events.max_age_seconds}",
        ),
        (
            websocket.ping_interval >= 0 and websocket.ping_timeout >= 0,
            "settings websocket.ping_interval and websocket.ping_timeout must not be negative",
        ),
        (
            not websocket.ping_interval or websocket.ping_timeout <= websocket.ping_interval,
            f"setting websocket.ping_timeout ({websocket.ping_timeout}) must not exceed "
            f"websocket.ping_interval ({websocket.ping_interval})",
        ),
        (
            websocket.max_buffer_bytes >= 1024,
            f"setting websocket.max_buffer_bytes must be at least 1024, got {websocket.max_buffer_bytes}",
        ),
        (
            settings.logging.level.upper() in LOG_LEVELS,
            f"setting logging.level must be one of {', '.join(LOG_LEVELS)}, got {settings.logging.level!r}",
        ),
    ]
    for origin in websocket.allowed_origins:
        checks.append((
            origin.startswith(("http://", "https://")),
            f"setting websocket.allowed_origins must hold http(s)://host[:port] origins, got {origin!r}",
        ))
    for passed, message in checks:
        if not passed:
            raise SettingsError(message)


def hide_password(url: str) -> str:
    """Return the URL with its password replaced by ***, for logs and errors."""
    scheme, separator, rest = url.partition("://")
    if not separator or "@" not in rest:
        return url
    credentials, _, location = rest.rpartition("@")
    user, has_password, _ = credentials.partition(":")
    return f"{scheme}://{user}:***@{location}" if has_password else url
