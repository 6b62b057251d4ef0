"""Settings: flags > ``CFGSTORE_*`` > ``REDIS_URL``, typed parsing, defaults, redaction.

Every test passes its own ``environ``: the operator's environment is never read here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cfgstore.adapters import Settings
from cfgstore.adapters.settings import DEFAULT_FILE_CHAIN, DEFAULT_REDIS_CHAIN, redact_url
from cfgstore.errors import InvalidData

# -- precedence ------------------------------------------------------------------------


def test_redis_url_precedence() -> None:
    env = {"REDIS_URL": "redis://generic:6379/0"}
    assert Settings.load(environ=env).redis_url == "redis://generic:6379/0"
    env["CFGSTORE_REDIS_URL"] = "redis://ours:6379/1"
    assert Settings.load(environ=env).redis_url == "redis://ours:6379/1"
    assert Settings.load({"redis_url": "redis://flag:6379/2"}, env).redis_url == (
        "redis://flag:6379/2"
    )
    # A flag that was not given (None) does not hide the environment.
    assert Settings.load({"redis_url": None}, env).redis_url == "redis://ours:6379/1"


def test_empty_redis_url_is_unset() -> None:
    settings = Settings.load(environ={"REDIS_URL": ""})
    assert settings.redis_url is None
    assert settings.chain == DEFAULT_FILE_CHAIN


@pytest.mark.parametrize(
    ("name", "env_value", "flag_value", "env_expected", "flag_expected"),
    [
        ("watch_interval_ms", "250", 40, 250, 40),
        ("reset_counters_on_start", "false", True, False, True),
        ("backends", "memory,redis", ("file",), ("memory", "redis"), ("file",)),
        ("configs_dir", "/srv/a/configs", Path("/srv/b/configs"), Path("/srv/a/configs"), None),
        ("redis_prefix", "envprefix", "flagprefix", "envprefix", "flagprefix"),
    ],
)
def test_flags_beat_cfgstore_environment(
    name: str, env_value: str, flag_value: object, env_expected: object, flag_expected: object
) -> None:
    env = {f"CFGSTORE_{name.upper()}": env_value}
    assert getattr(Settings.load(environ=env), name) == env_expected
    expected = flag_value if flag_expected is None else flag_expected
    assert getattr(Settings.load({name: flag_value}, env), name) == expected


def test_flag_given_as_text_is_parsed_like_the_environment() -> None:
    settings = Settings.load(
        {"watch_interval_ms": "75", "reset_counters_on_start": "no", "configs_dir": "x/configs"},
        {},
    )
    assert settings.watch_interval_ms == 75
    assert settings.reset_counters_on_start is False
    assert settings.configs_dir == Path("x/configs")


def test_unknown_flag_is_invalid() -> None:
    with pytest.raises(InvalidData, match="no_such_setting"):
        Settings.load({"no_such_setting": 1}, {})


def test_test_variables_are_ignored() -> None:
    env = {
        "CFGSTORE_TEST_REDIS_URL": "redis://test-only:6379/9",
        "CFGSTORE_TEST_SCALE": "10",
        "CFGSTORE_TEST_WATCH_INTERVAL_MS": "not a number",
    }
    settings = Settings.load(environ=env)
    assert settings.redis_url is None
    assert settings.chain == DEFAULT_FILE_CHAIN
    assert settings.watch_interval_ms == Settings().watch_interval_ms
    assert settings.extra == {}


def test_unrecognised_cfgstore_values_go_to_extra() -> None:
    settings = Settings.load(environ={"CFGSTORE_ETCD_ENDPOINTS": "a:2379,b:2379", "OTHER": "x"})
    assert settings.extra == {"etcd_endpoints": "a:2379,b:2379"}


def test_environment_is_read_only_from_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CFGSTORE_WATCH_INTERVAL_MS", "123")
    monkeypatch.setenv("REDIS_URL", "redis://process:6379")
    assert Settings.load(environ={}).watch_interval_ms == Settings().watch_interval_ms
    assert Settings.load(environ={}).redis_url is None
    assert Settings.load().watch_interval_ms == 123


# -- parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["1", "true", "TRUE", "yes", "On", " true "])
def test_true_values(text: str) -> None:
    env = {"CFGSTORE_RESET_COUNTERS_ON_START": text}
    assert Settings.load(environ=env).reset_counters_on_start is True


@pytest.mark.parametrize("text", ["0", "false", "False", "no", "OFF"])
def test_false_values(text: str) -> None:
    env = {"CFGSTORE_RESET_COUNTERS_ON_START": text}
    assert Settings.load(environ=env).reset_counters_on_start is False


def test_ints_and_tuples() -> None:
    env = {
        "CFGSTORE_WRITE_DEBOUNCE_MS": "250",
        "CFGSTORE_WRITE_MAX_WAIT_MS": " 3000 ",
        "CFGSTORE_WATCH_INTERVAL_MS": "0",
        "CFGSTORE_BACKENDS": " memory , file ,, ",
        "CFGSTORE_STATE_DIR": "/var/lib/cfgstore",
        "CFGSTORE_CWD": "/app",
    }
    settings = Settings.load(environ=env)
    assert settings.write_debounce_ms == 250
    assert settings.write_max_wait_ms == 3000
    assert settings.watch_interval_ms == 0
    assert settings.backends == ("memory", "file")
    assert settings.state_dir == Path("/var/lib/cfgstore")
    assert settings.cwd == Path("/app")
    assert isinstance(settings.write_debounce_ms, int)


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("CFGSTORE_WATCH_INTERVAL_MS", "fast", "expected an integer, got 'fast'"),
        ("CFGSTORE_WRITE_DEBOUNCE_MS", "1.5", "expected an integer, got '1.5'"),
        ("CFGSTORE_RESET_COUNTERS_ON_START", "maybe", "expected a boolean, got 'maybe'"),
    ],
)
def test_bad_values_name_the_variable(variable: str, value: str, problem: str) -> None:
    with pytest.raises(InvalidData) as caught:
        Settings.load(environ={variable: value})
    assert caught.value.source == variable
    assert caught.value.problem == problem
    assert variable in str(caught.value)


def test_bad_flag_value_names_the_flag() -> None:
    with pytest.raises(InvalidData) as caught:
        Settings.load({"watch_interval_ms": "soon"}, {})
    assert caught.value.source == "--watch_interval_ms"
    assert "soon" in str(caught.value)


# -- defaults --------------------------------------------------------------------------


def test_default_chain_is_file_without_redis() -> None:
    assert Settings.load(environ={}).chain == ("memory", "file") == DEFAULT_FILE_CHAIN


def test_default_chain_is_redis_with_a_redis_url() -> None:
    assert Settings.load(environ={"REDIS_URL": "redis://r:6379"}).chain == DEFAULT_REDIS_CHAIN
    assert DEFAULT_REDIS_CHAIN == ("memory", "redis")
    assert Settings(redis_url="redis://r").chain == ("memory", "redis")


def test_explicit_backends_win_over_the_default() -> None:
    env = {"REDIS_URL": "redis://r:6379", "CFGSTORE_BACKENDS": "file"}
    assert Settings.load(environ=env).chain == ("file",)
    # An empty list is no choice: the default applies.
    assert Settings.load(environ={"CFGSTORE_BACKENDS": " , "}).chain == DEFAULT_FILE_CHAIN


def test_working_dir_defaults_to_parent_of_configs_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert Settings().working_dir == tmp_path  # ./configs → .
    assert Settings(configs_dir=Path("deploy/configs")).working_dir == tmp_path / "deploy"
    assert Settings(configs_dir=Path("/srv/app/configs")).working_dir == Path("/srv/app")
    settings = Settings.load(environ={"CFGSTORE_CONFIGS_DIR": "/data/configs"})
    assert settings.working_dir == Path("/data")


def test_explicit_cwd_wins() -> None:
    settings = Settings.load({"cwd": Path("/app")}, {"CFGSTORE_CONFIGS_DIR": "/mnt/volume/configs"})
    assert settings.working_dir == Path("/app")
    assert settings.configs_dir == Path("/mnt/volume/configs")


def test_defaults() -> None:
    settings = Settings.load(environ={})
    assert settings.configs_dir == Path("configs")
    assert settings.redis_prefix == "aiclient"
    assert settings.reset_counters_on_start is True
    assert settings.watch_interval_ms == 1000
    assert (settings.write_debounce_ms, settings.write_max_wait_ms) == (1000, 5000)


# -- redaction -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://user:s3cret@cache:6379/0", "redis://user:***@cache:6379/0"),
        ("redis://:s3cret@cache:6379", "redis://:***@cache:6379"),
        ("rediss://default:p%40ss@[::1]:6380/2?ssl=1", "rediss://default:***@[::1]:6380/2?ssl=1"),
        ("redis://user:pa@ss@cache:6379", "redis://user:***@cache:6379"),
        ("redis://user:@cache", "redis://user:***@cache"),
    ],
)
def test_redact_url_hides_passwords(url: str, expected: str) -> None:
    redacted = redact_url(url)
    assert redacted == expected
    for secret in ("s3cret", "p%40ss", "pa@ss"):
        assert secret not in redacted


@pytest.mark.parametrize(
    "url", ["redis://cache:6379/0", "redis://user@cache:6379", "unix:///run/redis.sock"]
)
def test_redact_url_leaves_urls_without_password(url: str) -> None:
    assert redact_url(url) == url
