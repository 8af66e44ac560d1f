"""Settings: file defaults, environment overrides and validation."""

from __future__ import annotations

import pytest

from settings import SettingsError, hide_password, load_settings


def test_defaults_from_settings_file():
    settings = load_settings(environ={})
    assert settings.server.host == "127.0.0.1"
    assert settings.server.port == 8080
    assert settings.redis.url == ""
    assert settings.redis.key_prefix == "notifier:"
    assert settings.events.history_size == 1000
    assert settings.events.max_age_seconds == 7 * 24 * 3600
    assert settings.websocket.max_buffer_bytes == 1 << 20
    assert settings.websocket.compression is False
    assert settings.server.workers == 1
    assert settings.server.event_loop == "auto"


def test_environment_overrides_file():
    settings = load_settings(
        environ={
            "NOTIFIER_SERVER_PORT": "9000",
            "NOTIFIER_REDIS_URL": "redis://127.0.0.1:6379/2",
            "NOTIFIER_REDIS_KEY_PREFIX": "other:",
            "NOTIFIER_WEBSOCKET_ALLOWED_ORIGINS": "https://a.example, https://b.example",
            "NOTIFIER_WEBSOCKET_COMPRESSION": "true",
            "NOTIFIER_SERVER_MAX_BODY_BYTES": "2048",
        }
    )
    assert settings.server.port == 9000
    assert settings.redis.url == "redis://127.0.0.1:6379/2"
    assert settings.redis.key_prefix == "other:"
    assert settings.websocket.allowed_origins == ("https://a.example", "https://b.example")
    assert settings.websocket.compression is True
    assert settings.server.max_body_bytes == 2048


def test_port_argument_overrides_environment():
    assert load_settings(environ={"NOTIFIER_SERVER_PORT": "9000"}, port=9100).server.port == 9100


def test_config_file_argument(tmp_path):
    path = tmp_path / "custom.yaml"
    path.write_text("server:\n  port: 9200\nevents:\n  history_size: 5\n")
    settings = load_settings(path, environ={})
    assert settings.server.port == 9200
    assert settings.events.history_size == 5
    assert settings.redis.key_prefix == "notifier:"


@pytest.mark.parametrize(
    "text, key",
    [
        ("server: [1]\n", "server"),
        ("bogus:\n  a: 1\n", "bogus"),
        ("server:\n  port: '80'\n", "server.port"),
        ("redis:\n  key_prefix: 'a*'\n", "redis.key_prefix"),
        ("websocket:\n  allowed_origins: [example.com]\n", "websocket.allowed_origins"),
        (": : :\n", "not valid YAML"),
    ],
)
def test_invalid_file_names_key(tmp_path, text, key):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SettingsError) as error:
        load_settings(path, environ={})
    assert key in str(error.value)


def test_missing_file_reported(tmp_path):
    with pytest.raises(SettingsError, match="cannot read settings file"):
        load_settings(tmp_path / "absent.yaml", environ={})


@pytest.mark.parametrize(
    "url, shown",
    [
        ("redis://:secret@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://user:secret@host", "redis://user:***@host"),
        ("redis://host:6379", "redis://host:6379"),
        ("unix:///tmp/redis.sock", "unix:///tmp/redis.sock"),
    ],
)
def test_hide_password(url, shown):
    assert hide_password(url) == shown
