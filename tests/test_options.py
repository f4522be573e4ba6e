"""One schema for flags, `PUSHWIRE_*` variables and the TOML file (pushwire.options), seen
through `pushwire serve --print-config`: every `Config` field settable each way, the
precedence flag > environment > file > default, secrets masked."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from pushwire import cli, configfile, options
from pushwire.config import Config


def sample(setting: options.Setting) -> object:
    """A value of `setting` that is not its default (and passes `serve`'s own checks)."""
    special: dict[str, object] = {
        "broker": "redis://127.0.0.1:6390/2",
        "log_level": "debug",
        "log_format": "json",
        "anonymous": True,
        "per_ip_exempt_loopback": True,
        "websocket": False,
    }
    if setting.name in special:
        return special[setting.name]
    if setting.kind is bool:
        return not setting.default
    if setting.kind is int:
        return 7 if setting.default is None else int(str(setting.default)) + 1
    if setting.kind is float:
        return float(str(setting.default)) + 0.5
    if setting.kind is tuple:
        return ("a.example", "b.example")
    return f"value-of-{setting.name}"


def as_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


def as_toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple):
        return "[" + ", ".join(f'"{item}"' for item in value) + "]"
    return str(value)


def serve_actions() -> dict[str, argparse.Action]:
    """The `serve` subcommand's actions, by destination."""
    parser = cli._parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {action.dest: action for action in commands.choices["serve"]._actions}


def as_flags(setting: options.Setting, value: object) -> list[str]:
    """The command-line flags that set `setting` to `value`."""
    if setting.name == "websocket":
        return ["--no-websocket"]
    actions = serve_actions()
    named = {field: dest for dest, field in cli.NAMED_FLAGS.items()}
    action = actions[named.get(setting.name, options.FLAG_DEST + setting.name)]
    flag = action.option_strings[0]
    if isinstance(action, argparse.BooleanOptionalAction):
        return [flag if value else "--no-" + flag[2:]]
    if action.nargs == 0:  # store_const True
        return [flag]
    if isinstance(value, tuple):
        return [part for item in value for part in (flag, item)]
    return [flag, as_text(value)]


def print_config(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict[str, tuple[str, str]]:
    """`pushwire serve --print-config ARGV`: setting -> (value shown, source)."""
    assert cli.main(["serve", "--print-config", *argv]) == 0
    shown = {}
    for line in capsys.readouterr().out.splitlines():
        name, rest = line.split(maxsplit=1)
        value, _, source = rest.rpartition("(")
        shown[name] = (value.strip(), source.rstrip(")"))
    return shown


@pytest.fixture(autouse=True)
def no_pushwire_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for setting in options.schema().values():
        monkeypatch.delenv(setting.env, raising=False)


def test_the_schema_covers_every_config_field() -> None:
    assert list(options.schema()) == list(Config.__dataclass_fields__)


@pytest.mark.parametrize("source", ["flag", "env", "file"])
def test_every_setting_can_be_set_each_way(
    source: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    settings = options.schema()
    values = {name: sample(setting) for name, setting in settings.items()}
    argv: list[str] = []
    if source == "flag":
        for name, setting in settings.items():
            argv += as_flags(setting, values[name])
    elif source == "env":
        for name, setting in settings.items():
            monkeypatch.setenv(setting.env, as_text(values[name]))
    else:
        toml = tmp_path / "pushwire.toml"
        toml.write_text(
            "[server]\n" + "".join(f"{name} = {as_toml(v)}\n" for name, v in values.items())
        )
        argv = ["--config", str(toml)]
    shown = print_config(capsys, argv)
    assert set(shown) == set(settings)
    for name, value in values.items():
        assert shown[name] == (options.shown(name, value), source), name


def test_a_flag_wins_over_the_environment_which_wins_over_the_file(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    toml = tmp_path / "pushwire.toml"
    toml.write_text(
        "[server]\nping_interval = 1.0\nmax_message = 1000\nport = 9001\n\n"
        '[auth]\napi_key = "file-key"\n'
    )
    monkeypatch.setenv("PUSHWIRE_PING_INTERVAL", "2")
    monkeypatch.setenv("PUSHWIRE_MAX_MESSAGE", "2000")
    monkeypatch.setenv("PUSHWIRE_JWT_SECRET", "secret-from-the-environment")
    argv = ["--config", str(toml), "--ping-interval", "3", "--set", "max_subscriptions=9"]
    shown = print_config(capsys, argv)
    assert shown["ping_interval"] == ("3.0", "flag")
    assert shown["max_subscriptions"] == ("9", "flag")
    assert shown["max_message"] == ("2000", "env")
    assert shown["jwt_secret"] == ("***", "env")
    assert shown["port"] == ("9001", "file")
    assert shown["api_key"] == ("***", "file")
    assert shown["history_size"] == ("1000", "default")


def test_secrets_and_a_broker_password_are_never_printed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUSHWIRE_BROKER", "redis://user:hunter2@127.0.0.1:6379/0")
    argv = ["--api-key", "the-api-key", "--jwt-secret", "the-jwt-secret"]
    assert cli.main(["serve", "--print-config", *argv]) == 0
    out = capsys.readouterr().out
    for secret in ("hunter2", "the-api-key", "the-jwt-secret"):
        assert secret not in out
    assert "redis://user:***@127.0.0.1:6379/0" in out


def test_a_wrong_value_anywhere_is_one_line_and_status_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PUSHWIRE_MAX_MESSAGE", "lots")
    assert cli.main(["serve", "--print-config"]) == 2
    assert capsys.readouterr().err == (
        "pushwire serve: PUSHWIRE_MAX_MESSAGE: setting max_message needs an integer, not 'lots'\n"
    )
    monkeypatch.delenv("PUSHWIRE_MAX_MESSAGE")
    toml = tmp_path / "pushwire.toml"
    toml.write_text('[server]\nmax_mesage = 5\n[auth]\napi_key = "k"\n')
    with pytest.raises(ValueError, match=r"\[server\]: unknown key 'max_mesage'"):
        configfile.load(str(toml), {})
    toml.write_text('[server]\napi_key = "a"\n[auth]\napi_key = "b"\n')
    with pytest.raises(ValueError, match=r"api_key in both \[server\] and \[auth\]"):
        configfile.load(str(toml), {})
    toml.write_text("[server]\nmax_message = 1.5\n")
    with pytest.raises(ValueError, match="max_message must be a int"):
        configfile.load(str(toml), {})


def test_print_config_runs_from_the_command_line(tmp_path: Path) -> None:
    toml = tmp_path / "pushwire.toml"
    toml.write_text("[server]\nheartbeat_interval = 7\n")
    done = subprocess.run(
        [sys.executable, "-m", "pushwire", "serve", "--print-config", "--config", str(toml)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PUSHWIRE_POLL_GRACE": "4", "PATH": "/usr/bin:/bin", **_pythonpath()},
        check=True,
    )
    lines = {line.split()[0]: line for line in done.stdout.splitlines()}
    assert lines["heartbeat_interval"].endswith("(file)")
    assert lines["poll_grace"].endswith("(env)")


def _pythonpath() -> dict[str, str]:
    import os

    return {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}
