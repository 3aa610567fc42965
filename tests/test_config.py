"""Layered configuration: defaults < user aikit.toml < project aikit.toml < profile < environment;
secrets masked everywhere; errors that name the key, the file and the line."""

from __future__ import annotations

import copy
import json
import logging
import os
import pickle
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from aikit_components.config import (
    DEFAULTS,
    Config,
    Secret,
    data_dir,
    env_int,
    is_secret_key,
    load_config,
    project_config_path,
    user_config_path,
)
from aikit_components.config.trust import TRUST_FILE, TrustStore
from aikit_components.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
SECRET = "sk-live-VERY-SECRET-0123456789"


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    """(project dir, user config dir), both empty."""
    project = tmp_path / "project"
    user = tmp_path / "user"
    project.mkdir()
    user.mkdir()
    return project, user


def write(directory: Path, text: str) -> Path:
    path = directory / "aikit.toml"
    path.write_text(text, encoding="utf-8")
    return path


def trust(dirs: tuple[Path, Path]) -> None:
    """Trust the project file as it is now (as `aikit config trust` does), so it may widen rights."""
    project, user = dirs
    TrustStore(user / TRUST_FILE).trust(project / "aikit.toml")


def load(dirs: tuple[Path, Path], env: dict[str, str] | None = None, profile: str | None = None) -> Config:
    project, user = dirs
    return Config.load(cwd=project, profile=profile, env=env or {}, user_dir=user)


# ---------------------------------------------------------------- defaults and precedence


def test_defaults_only(dirs: tuple[Path, Path]) -> None:
    config = load(dirs)
    assert config.to_dict() == DEFAULTS
    assert config.sources == []
    assert config.profile is None
    assert config.warnings == []
    assert config.get("tools.http_timeout_s") == 30
    assert config.get("security.allowed_commands")[0] == "git"
    assert config.get("nope.nothing", "fallback") == "fallback"
    assert config.section("state") == {"backend": "sqlite"}
    assert config.section("missing") == {}
    assert "kernel" in config and config["kernel"]["max_memory_mb"] == 2048


def test_precedence_defaults_user_project_profile_env(dirs: tuple[Path, Path]) -> None:
    project, user = dirs
    user_file = write(user, """
[tools]
http_timeout_s = 10
http_retries = 5
process_timeout_s = 11

[profiles.ci.tools]
process_timeout_s = 12
process_output_cap_bytes = 13
""")
    project_file = write(project, """
[tools]
http_timeout_s = 20
http_retries = 6

[profiles.ci.tools]
process_output_cap_bytes = 14
""")
    base = load(dirs)
    assert base.sources == [str(user_file), str(project_file)]
    tools = base.get("tools")
    assert {k: tools[k] for k in ("http_timeout_s", "http_retries", "process_timeout_s", "process_output_cap_bytes")} == {
        "http_timeout_s": 20,  # project over user
        "http_retries": 6,
        "process_timeout_s": 11,  # user over default
        "process_output_cap_bytes": 1048576,  # default
    }
    assert base.profiles == ["ci"]

    ci = load(dirs, profile="ci", env={"AIKIT_TOOLS__HTTP_RETRIES": "9"})
    assert ci.profile == "ci"
    ci_tools = ci.get("tools")
    assert {k: ci_tools[k] for k in ("http_timeout_s", "http_retries", "process_timeout_s", "process_output_cap_bytes")} == {
        "http_timeout_s": 20,
        "http_retries": 9,  # env over everything
        "process_timeout_s": 12,  # user profile over project base
        "process_output_cap_bytes": 14,  # project profile over user profile
    }
    assert ci.env_overrides == ["AIKIT_TOOLS__HTTP_RETRIES"]
    # profiles are a source of settings, not part of the effective config
    assert "profiles" not in ci.to_dict()


def test_arrays_replace_tables_merge(dirs: tuple[Path, Path]) -> None:
    project, user = dirs
    write(user, '[security]\nallowed_hosts = ["a.example"]\nmax_tool_calls = 5\n')
    write(project, '[security]\nallowed_hosts = ["b.example"]\n')
    trust(dirs)
    config = load(dirs)
    assert config.get("security.allowed_hosts") == ["b.example"]
    assert config.get("security.max_tool_calls") == 5
    assert config.get("security.allow_private_hosts") is False


def test_user_config_locations(tmp_path: Path) -> None:
    assert user_config_path({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "aikit" / "aikit.toml"
    assert user_config_path({"HOME": str(tmp_path)}) == tmp_path / ".config" / "aikit" / "aikit.toml"
    explicit = tmp_path / "elsewhere.toml"
    assert user_config_path({"AIKIT_CONFIG": str(explicit), "XDG_CONFIG_HOME": "/x"}) == explicit
    assert user_config_path({"AIKIT_CONFIG": str(explicit)}, user_dir=tmp_path) == tmp_path / "aikit.toml"
    assert project_config_path(tmp_path) == tmp_path / "aikit.toml"


def test_xdg_and_aikit_config_are_read(tmp_path: Path) -> None:
    project = tmp_path / "p"
    project.mkdir()
    xdg = tmp_path / "xdg"
    (xdg / "aikit").mkdir(parents=True)
    write(xdg / "aikit", "[kernel]\nmax_memory_mb = 100\n")
    assert Config.load(cwd=project, env={"XDG_CONFIG_HOME": str(xdg)}).get("kernel.max_memory_mb") == 100

    explicit = tmp_path / "team.toml"
    explicit.write_text("[kernel]\nmax_memory_mb = 200\n")
    config = Config.load(cwd=project, env={"XDG_CONFIG_HOME": str(xdg), "AIKIT_CONFIG": str(explicit)})
    assert config.get("kernel.max_memory_mb") == 200
    assert config.sources == [str(explicit)]

    with pytest.raises(ConfigError, match="AIKIT_CONFIG"):
        Config.load(cwd=project, env={"AIKIT_CONFIG": str(tmp_path / "missing.toml")})


def test_same_file_is_read_once(tmp_path: Path) -> None:
    write(tmp_path, "[kernel]\nmax_memory_mb = 1\n")
    config = Config.load(cwd=tmp_path, env={}, user_dir=tmp_path)
    assert config.sources == [str(tmp_path / "aikit.toml")]


# ---------------------------------------------------------------- profiles


def test_profile_from_environment(dirs: tuple[Path, Path]) -> None:
    project, _ = dirs
    write(project, "[profiles.prod.kernel]\nmax_memory_mb = 1024\n")
    assert load(dirs, env={"AIKIT_PROFILE": "prod"}).get("kernel.max_memory_mb") == 1024
    # the argument wins over the environment
    with pytest.raises(ConfigError, match="unknown profile 'dev'"):
        load(dirs, env={"AIKIT_PROFILE": "prod"}, profile="dev")


def test_unknown_profile_lists_available(dirs: tuple[Path, Path]) -> None:
    project, user = dirs
    write(user, "[profiles.alpha.tools]\nhttp_retries = 1\n")
    write(project, "[profiles.beta.tools]\nhttp_retries = 2\n")
    with pytest.raises(ConfigError) as info:
        load(dirs, profile="gamma")
    message = info.value.message
    assert "gamma" in message and "alpha, beta" in message
    assert info.value.details["available"] == ["alpha", "beta"]
    with pytest.raises(ConfigError, match="AIKIT_PROFILE"):
        load(dirs, env={"AIKIT_PROFILE": "gamma"})


def test_unknown_profile_without_any_profiles(dirs: tuple[Path, Path]) -> None:
    with pytest.raises(ConfigError, match="none are defined"):
        load(dirs, profile="dev")


def test_bad_type_inside_profile_names_profile_key_and_line(dirs: tuple[Path, Path]) -> None:
    project, _ = dirs
    path = write(project, '[tools]\nhttp_retries = 1\n\n[profiles.dev.tools]\nhttp_retries = "many"\n')
    with pytest.raises(ConfigError) as info:
        load(dirs)
    assert f"{path}, line 5" in info.value.message
    assert "profiles.dev.tools.http_retries" in info.value.message


# ---------------------------------------------------------------- environment overrides


def test_env_overrides_nested_and_typed(dirs: tuple[Path, Path]) -> None:
    project, _ = dirs
    write(project, '[providers.OpenAI]\nmodel = "gpt-4o"\n')
    env = {
        "AIKIT_TOOLS__HTTP_TIMEOUT_S": "5",
        "AIKIT_TOOLS__HTTP_RETRIES": "0",
        "AIKIT_SECURITY__ALLOW_PRIVATE_HOSTS": "true",
        "AIKIT_SECURITY__ALLOWED_HOSTS": '["a.example", "b.example"]',
        "AIKIT_SECURITY__ALLOWED_PATHS": "/data,/srv",
        "AIKIT_STATE__BACKEND": "memory",
        "AIKIT_PROVIDERS__OPENAI__API_KEY": SECRET,
        "AIKIT_PROVIDERS__OPENAI__TEMPERATURE": "0.5",
        "AIKIT_PROVIDERS__LOCAL__BASE_URL": "http://localhost:8080/v1",
        # single-underscore variables are settings of their own, never overrides (but the
        # documented aliases of kernel settings, tested below)
        "AIKIT_DATA_DIR": "/tmp/x",
        "AIKIT_ALLOWED_PATHS": "/etc",
        "OTHER__THING": "1",
    }
    config = load(dirs, env=env)
    assert config.get("tools.http_timeout_s") == 5
    assert config.get("tools.http_retries") == 0
    assert config.get("security.allow_private_hosts") is True
    assert config.get("security.allowed_hosts") == ["a.example", "b.example"]
    assert config.get("security.allowed_paths") == ["/data", "/srv"]
    assert config.get("state.backend") == "memory"
    # env names are upper case: they land on the existing key whatever its case
    assert config.get("providers.OpenAI.model") == "gpt-4o"
    assert config.get("providers.OpenAI.temperature") == 0.5
    assert config.secret("providers.OpenAI.api_key") == SECRET
    assert config.get("providers.local.base_url") == "http://localhost:8080/v1"
    assert config.get("kernel.max_memory_mb") == 2048
    assert "data_dir" not in config.to_dict()
    assert all("__" in name for name in config.env_overrides)
    assert "AIKIT_DATA_DIR" not in config.env_overrides


def test_env_secret_stays_a_string_even_if_it_looks_numeric(dirs: tuple[Path, Path]) -> None:
    config = load(dirs, env={"AIKIT_PROVIDERS__X__TOKEN": "12345", "AIKIT_STATE__BACKEND": "true"})
    assert config.secret("providers.x.token") == "12345"
    assert config.get("state.backend") == "true"


def test_env_bad_type_names_variable_and_key(dirs: tuple[Path, Path]) -> None:
    with pytest.raises(ConfigError) as info:
        load(dirs, env={"AIKIT_TOOLS__HTTP_RETRIES": "lots"})
    message = info.value.message
    assert "AIKIT_TOOLS__HTTP_RETRIES" in message and "tools.http_retries" in message
    assert info.value.details == {"env": "AIKIT_TOOLS__HTTP_RETRIES", "key": "tools.http_retries"}


def test_env_malformed_and_conflicting_names(dirs: tuple[Path, Path]) -> None:
    with pytest.raises(ConfigError, match="malformed"):
        load(dirs, env={"AIKIT_TOOLS____X": "1"})
    with pytest.raises(ConfigError, match="not a table"):
        load(dirs, env={"AIKIT_TOOLS__HTTP_RETRIES__X": "1"})


def test_env_unknown_key_is_a_warning(dirs: tuple[Path, Path]) -> None:
    config = load(dirs, env={"AIKIT_KERNEL__FANCY": "1"})
    assert config.get("kernel.fancy") == 1
    assert any("AIKIT_KERNEL__FANCY" in w and "kernel.fancy" in w for w in config.warnings)


# ---------------------------------------------------------------- secrets


def test_secret_keys() -> None:
    for name in ("api_key", "OPENAI_API_KEY", "token", "access_token", "client_secret", "Password", "db-password"):
        assert is_secret_key(name), name
    for name in ("api_key_env", "max_tokens", "model", "secrets_dir", "tokenizer"):
        assert not is_secret_key(name), name


def test_secret_object_never_shows_its_value() -> None:
    secret = Secret(SECRET)
    assert secret.reveal() == SECRET
    for shown in (str(secret), repr(secret), f"{secret}", f"{secret!r}", f"{secret:>10}", "%s" % secret,  # noqa: UP031
                  str([secret]), str({"k": secret}), repr((secret,))):
        assert SECRET not in shown
        assert "****" in shown
    assert secret == Secret(SECRET) and secret != Secret("other")
    assert copy.deepcopy(secret).reveal() == SECRET
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    with pytest.raises(TypeError):
        json.dumps({"k": secret})
    with pytest.raises(AttributeError):
        secret._value = "x"  # type: ignore[misc]


def test_secrets_from_file_are_masked_everywhere(dirs: tuple[Path, Path], caplog: pytest.LogCaptureFixture) -> None:
    project, _ = dirs
    write(project, f'[providers.openai]\napi_key = "{SECRET}"\nmodel = "gpt-4o"\n\n[providers.db]\npassword = "{SECRET}"\n')
    caplog.set_level(logging.DEBUG)
    config = load(dirs)
    value = config.get("providers.openai.api_key")
    assert isinstance(value, Secret)
    assert config.secret("providers.openai.api_key") == SECRET
    assert config.secret("providers.db.password") == SECRET
    assert config.secret("providers.nobody.api_key") is None

    masked = config.to_dict()
    assert masked["providers"]["openai"] == {"api_key": "****", "model": "gpt-4o"}
    assert SECRET not in json.dumps(masked)
    assert SECRET not in config.to_toml()
    assert SECRET not in repr(config) and SECRET not in str(config)
    assert SECRET not in str(config.section("providers")) and SECRET not in str(config["providers"])
    assert config.to_dict(mask=False)["providers"]["openai"]["api_key"] == SECRET

    log = logging.getLogger("aikit.test")
    log.info("config %s", config)
    log.info("providers %s", config.section("providers"))
    log.info("key %s / %r", value, value)
    log.info("dict %s", config.to_dict())
    log.warning("toml %s", config.to_toml())
    assert caplog.records  # the loader's own debug records are in there too
    assert SECRET not in caplog.text
    assert "****" in caplog.text


def test_api_key_env_indirection(dirs: tuple[Path, Path]) -> None:
    project, _ = dirs
    write(project, '[providers.openai]\napi_key_env = "MY_OPENAI_KEY"\n\n[providers.other]\napi_key_env = "UNSET_VAR"\n'
                   '\n[providers.explicit]\napi_key = "from-file"\napi_key_env = "MY_OPENAI_KEY"\n')
    config = load(dirs, env={"MY_OPENAI_KEY": SECRET})
    assert isinstance(config.get("providers.openai.api_key"), Secret)
    assert config.secret("providers.openai.api_key") == SECRET
    assert config.get("providers.openai.api_key_env") == "MY_OPENAI_KEY"  # a name, not a secret
    assert config.to_dict()["providers"]["openai"]["api_key"] == "****"
    assert config.secret("providers.other.api_key") is None
    assert any("UNSET_VAR" in w for w in config.warnings)
    assert config.secret("providers.explicit.api_key") == "from-file"  # an explicit value wins
    assert SECRET not in config.to_toml() + repr(config)


def test_non_string_secret_is_an_error_that_hides_the_value(dirs: tuple[Path, Path]) -> None:
    project, _ = dirs
    path = write(project, "[providers.x]\ntoken = 987654321\n")
    with pytest.raises(ConfigError) as info:
        load(dirs)
    assert f"{path}, line 2" in info.value.message and "providers.x.token" in info.value.message
    assert "987654321" not in info.value.message


# ---------------------------------------------------------------- errors and warnings


def test_bad_type_names_key_file_and_line(dirs: tuple[Path, Path]) -> None:
    project, _ = dirs
    path = write(project, '# comment\n[kernel]\nmax_memory_mb = 512\n\n[tools]\nhttp_retries = 2\nhttp_timeout_s = "fast"\n')
    with pytest.raises(ConfigError) as info:
        load(dirs)
    error = info.value
    assert error.code == "config_error"
    assert "tools.http_timeout_s" in error.message
    assert f"{path}, line 7" in error.message
    assert '"fast"' in error.message
    assert error.details == {"file": str(path), "key": "tools.http_timeout_s", "line": 7}


@pytest.mark.parametrize(
    ("text", "key", "line"),
    [
        ("[security]\nallow_private_hosts = 1\n", "security.allow_private_hosts", 2),
        ("[security]\nallowed_hosts = \"a.example\"\n", "security.allowed_hosts", 2),
        ("[security]\nallowed_commands = [\"ls\", 3]\n", "security.allowed_commands", 2),
        ("[kernel]\nmax_memory_mb = true\n", "kernel.max_memory_mb", 2),
        ("[kernel]\nmax_memory_mb = -1\n", "kernel.max_memory_mb", 2),
        ("[state]\nbackend = 3\n", "state.backend", 2),
        ("x = 1\ntools.http_retries = 1.5\n", "tools.http_retries", 2),  # dotted key at top level
        ("tools = { http_retries = \"no\" }\n", "tools.http_retries", 1),  # inline table
        ("\n\ntools = 3\n", "tools", 3),  # a section that is not a table
        ('[providers.openai]\napi_key_env = 42\n', "providers.openai.api_key_env", 2),
    ],
)
def test_bad_values(dirs: tuple[Path, Path], text: str, key: str, line: int) -> None:
    project, _ = dirs
    path = write(project, text)
    with pytest.raises(ConfigError) as info:
        load(dirs)
    assert key in info.value.message
    assert f"{path}, line {line}" in info.value.message


def test_durations_accept_floats(dirs: tuple[Path, Path]) -> None:
    project, _ = dirs
    write(project, "[tools]\nhttp_timeout_s = 2.5\n")
    assert load(dirs).get("tools.http_timeout_s") == 2.5


def test_toml_syntax_error_names_file_and_line(dirs: tuple[Path, Path]) -> None:
    project, user = dirs
    path = write(user, "[tools]\nhttp_retries = 1\nhttp_timeout_s = = 3\n")
    with pytest.raises(ConfigError) as info:
        load(dirs)
    assert str(path) in info.value.message
    assert "line 3" in info.value.message
    assert info.value.details["file"] == str(path)
    assert info.value.details["line"] == 3
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_not_utf8_names_file(dirs: tuple[Path, Path]) -> None:
    project, _ = dirs
    (project / "aikit.toml").write_bytes(b"[tools]\n# \xff\xfe\n")
    with pytest.raises(ConfigError, match="line 2.*UTF-8"):
        load(dirs)


def test_unknown_keys_are_warnings_with_lines(dirs: tuple[Path, Path]) -> None:
    project, _ = dirs
    path = write(project, "[tools]\nhttp_retries = 1\nhttp_retrys = 3\n\n[plugins]\nfoo = 1\n\n"
                          "[providers.any]\nwhatever = 1\n")
    config = load(dirs)
    assert config.get("tools.http_retrys") == 3  # kept
    assert config.get("plugins.foo") == 1
    assert len(config.warnings) == 2, config.warnings
    assert f"{path}, line 3" in config.warnings[0] and "tools.http_retrys" in config.warnings[0]
    assert f"{path}, line 5" in config.warnings[1] and "plugins" in config.warnings[1]


def test_profiles_must_be_tables(dirs: tuple[Path, Path]) -> None:
    project, _ = dirs
    path = write(project, "[profiles]\ndev = 1\n")
    with pytest.raises(ConfigError, match=rf"{path}, line 2: profiles\.dev must be a table"):
        load(dirs)


# ---------------------------------------------------------------- output


def test_to_toml_round_trips(dirs: tuple[Path, Path]) -> None:
    project, _ = dirs
    write(project, '[providers."my.host"]\napi_key = "q\\"uote\\\\ \\u0001 é"\nextra = { a = [1, 2.5, true] }\n'
                   'when = 2024-01-02T03:04:05Z\n\n[providers.empty]\n')
    config = load(dirs)
    assert tomllib.loads(config.to_toml(mask=False)) == config.to_dict(mask=False)
    masked = tomllib.loads(config.to_toml())
    assert masked["providers"]["my.host"]["api_key"] == "****"
    assert config.get(["providers", "my.host", "extra", "a"]) == [1, 2.5, True]


def test_reads_return_copies(dirs: tuple[Path, Path]) -> None:
    config = load(dirs)
    config.get("security.allowed_commands").append("rm")
    config.section("tools")["http_retries"] = 99
    config["kernel"]["max_memory_mb"] = 1
    assert "rm" not in config.get("security.allowed_commands")
    assert config.get("tools.http_retries") == 2
    assert config.get("kernel.max_memory_mb") == 2048


def test_load_config_caches_and_reloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    for name in [n for n in os.environ if n.startswith("AIKIT_")]:
        monkeypatch.delenv(name)
    write(tmp_path, "[tools]\nhttp_retries = 3\n")
    first = load_config(reload=True)
    assert first.get("tools.http_retries") == 3
    write(tmp_path, "[tools]\nhttp_retries = 4\n")
    assert load_config() is first
    assert load_config(reload=True).get("tools.http_retries") == 4


def test_pre_config_helpers_still_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIKIT_DATA_DIR", str(tmp_path / "data"))
    assert data_dir() == (tmp_path / "data").resolve() and data_dir().is_dir()
    monkeypatch.setenv("AIKIT_SOME_INT", "42")
    assert env_int("AIKIT_SOME_INT", 1) == 42
    monkeypatch.delenv("AIKIT_SOME_INT")
    assert env_int("AIKIT_SOME_INT", 1) == 1


def test_components_do_not_import_the_kernel() -> None:
    code = (
        "import sys, aikit_components.config\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('zmq', 'lupa', 'jupyter_client', 'aikit_kernel')]\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- the CLI


def cli(project: Path, home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AIKIT_")}
    base.update(XDG_CONFIG_HOME=str(home), PYTHONPATH=str(REPO), **env)
    return subprocess.run(
        [sys.executable, "-m", "aikit_kernel.cli.main", "config", *args],
        cwd=project, env=base, capture_output=True, text=True, timeout=60,
    )


def test_cli_show_masks_secrets(dirs: tuple[Path, Path]) -> None:
    project, user = dirs
    (user / "aikit").mkdir()
    user_file = write(user / "aikit", f'[providers.openai]\napi_key = "{SECRET}"\n')
    project_file = write(project, '[tools]\nhttp_retries = 4\n[profiles.dev.tools]\nhttp_retries = 8\n'
                                  '[providers.anthropic]\napi_key_env = "ANTHROPIC_KEY"\n')
    proc = cli(project, user, "show", AIKIT_PROVIDERS__X__TOKEN=SECRET, ANTHROPIC_KEY=SECRET)
    assert proc.returncode == 0, proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    assert str(user_file) in proc.stdout and str(project_file) in proc.stdout
    assert "AIKIT_PROVIDERS__X__TOKEN" in proc.stdout
    body = tomllib.loads(proc.stdout)
    assert body["tools"]["http_retries"] == 4
    assert body["providers"]["openai"]["api_key"] == "****"
    assert body["providers"]["anthropic"]["api_key"] == "****"
    assert body["providers"]["x"]["token"] == "****"

    proc = cli(project, user, "show", "--profile", "dev", "--json", ANTHROPIC_KEY=SECRET)
    assert proc.returncode == 0, proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    assert data["tools"]["http_retries"] == 8
    assert data["providers"]["openai"]["api_key"] == "****"

    proc = cli(project, user, "show", AIKIT_PROFILE="dev")
    assert tomllib.loads(proc.stdout)["tools"]["http_retries"] == 8
    assert "# profile: dev" in proc.stdout


def test_cli_show_bad_config_exits_1_without_traceback(dirs: tuple[Path, Path]) -> None:
    project, user = dirs
    path = write(project, '[tools]\n\nhttp_retries = "x"\n')
    proc = cli(project, user, "show")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("aikit: error: ")
    assert f"{path}, line 3" in proc.stderr and "tools.http_retries" in proc.stderr

    write(project, "[tools\n")
    proc = cli(project, user, "show")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert str(path) in proc.stderr and "line 1" in proc.stderr

    write(project, "")
    proc = cli(project, user, "show", "--profile", "nope")
    assert proc.returncode == 1 and "unknown profile 'nope'" in proc.stderr


def test_cli_show_prints_warnings_to_stderr(dirs: tuple[Path, Path]) -> None:
    project, user = dirs
    write(project, "[tools]\nhttp_retrys = 1\n")
    proc = cli(project, user, "show")
    assert proc.returncode == 0
    assert "aikit: warning:" in proc.stderr and "tools.http_retrys" in proc.stderr


def test_cli_path(dirs: tuple[Path, Path]) -> None:
    project, user = dirs
    write(project, "")
    proc = cli(project, user, "path")
    assert proc.returncode == 0, proc.stderr
    assert str(user / "aikit" / "aikit.toml") in proc.stdout and "not found" in proc.stdout
    assert str(project / "aikit.toml") in proc.stdout
    assert "AIKIT_<SECTION>__<KEY>" in proc.stdout


def test_console_script_lists_config() -> None:
    script = Path(sys.executable).with_name("aikit")
    if not script.exists():
        pytest.skip("console script not installed")
    proc = subprocess.run([str(script), "config", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "show" in proc.stdout and "path" in proc.stdout


def test_env_values_are_one_literal_or_a_string(dirs: tuple[Path, Path]) -> None:
    config = load(dirs, env={
        "AIKIT_TOOLS__HTTP_RETRIES": "3",
        "AIKIT_PROVIDERS__X__NOTE": "1\nother = 2",  # not a single TOML literal: kept verbatim
        "AIKIT_SECURITY__ALLOWED_COMMANDS": "ls",
        "AIKIT_SECURITY__ENV_ALLOWLIST": "true",
    })
    assert config.get("tools.http_retries") == 3
    assert config.get("providers.x.note") == "1\nother = 2"
    assert config.get("security.allowed_commands") == ["ls"]
    assert config.get("security.env_allowlist") == ["true"]


# ---------------------------------------------------------------- [kernel]: settings and aliases


def test_kernel_settings_have_defaults(dirs: tuple[Path, Path]) -> None:
    from aikit_kernel.settings import KernelSettings

    settings = KernelSettings.from_config(load(dirs))
    assert settings == KernelSettings()
    assert (settings.max_memory_mb, settings.max_message_mb, settings.log_level) == (2048, 64, "WARNING")
    assert settings.dap_port is None and settings.resume_session is None
    assert settings.max_memory_bytes == 2048 * 1024 * 1024
    assert KernelSettings(max_memory_mb=0).max_memory_bytes is None


def test_kernel_settings_come_from_the_file_and_the_environment(dirs: tuple[Path, Path]) -> None:
    from aikit_kernel.settings import KernelSettings

    write(dirs[0], '[kernel]\nmax_memory_mb = 512\nlog_level = "debug"\ndap_port = 5678\n')
    settings = KernelSettings.from_config(load(dirs, env={"AIKIT_KERNEL__MAX_MESSAGE_MB": "8"}))
    assert (settings.max_memory_mb, settings.max_message_mb, settings.log_level, settings.dap_port) == (
        512, 8, "DEBUG", 5678)


@pytest.mark.parametrize(("alias", "key", "raw", "expected"), [
    ("AIKIT_MAX_MEMORY_MB", "kernel.max_memory_mb", "1", 1),
    ("AIKIT_MAX_MESSAGE_MB", "kernel.max_message_mb", "3", 3),
    ("AIKIT_LOG_LEVEL", "kernel.log_level", "INFO", "INFO"),
    ("AIKIT_DAP_PORT", "kernel.dap_port", "5678", 5678),
    ("AIKIT_SESSION", "kernel.resume_session", "0123abcd", "0123abcd"),
])
def test_older_variables_are_aliases_of_kernel_settings(dirs: tuple[Path, Path], alias: str, key: str, raw: str,
                                                        expected: object) -> None:
    config = load(dirs, env={alias: raw})
    assert config.get(key) == expected
    assert alias in config.env_overrides


def test_the_sectioned_override_beats_its_alias(dirs: tuple[Path, Path]) -> None:
    config = load(dirs, env={"AIKIT_MAX_MEMORY_MB": "1", "AIKIT_KERNEL__MAX_MEMORY_MB": "2"})
    assert config.get("kernel.max_memory_mb") == 2


def test_a_bad_alias_value_names_the_variable(dirs: tuple[Path, Path]) -> None:
    with pytest.raises(ConfigError, match="AIKIT_DAP_PORT.*kernel.dap_port must be a non-negative integer"):
        load(dirs, env={"AIKIT_DAP_PORT": "soon"})


@pytest.mark.parametrize(("text", "message"), [
    ('[kernel]\nlog_level = "LOUD"\n', "kernel.log_level must be one of"),
    ("[kernel]\nmax_message_mb = 0\n", "kernel.max_message_mb must be at least 1"),
    ("[kernel]\ndap_port = 70000\n", "kernel.dap_port must be a TCP port"),
])
def test_kernel_settings_are_checked(dirs: tuple[Path, Path], text: str, message: str) -> None:
    from aikit_kernel.settings import KernelSettings, load_settings

    write(dirs[0], text)
    config = load(dirs)
    with pytest.raises(ConfigError, match=message):
        KernelSettings.from_config(config)
    loaded = load_settings(config)  # a kernel still starts: default settings and the error to show
    assert loaded.settings == KernelSettings() and loaded.error is not None and message in loaded.error


# ---------------------------------------------------------------- project files that grant rights


def test_an_untrusted_project_file_cannot_widen_the_policy(dirs: tuple[Path, Path]) -> None:
    project, user = dirs
    write(user, '[security]\nallowed_commands = ["ls", "cat"]\n')
    write(project, '[security]\nallowed_commands = ["ls", "cat", "sh"]\nallowed_paths = ["/"]\n'
                   'allow_private_hosts = true\n[kernel]\nmax_memory_mb = 0\n[tools]\nhttp_retries = 5\n')
    config = load(dirs)
    assert config.get("security.allowed_commands") == ["ls", "cat"]
    assert config.get("security.allowed_paths") == []
    assert config.get("security.allow_private_hosts") is False
    assert config.get("kernel.max_memory_mb") == 2048
    assert config.get("tools.http_retries") == 5  # grants nothing: taken as written
    assert sorted(config.ignored) == ["kernel.max_memory_mb", "security.allow_private_hosts",
                                      "security.allowed_commands", "security.allowed_paths"]
    (warning,) = [w for w in config.warnings if "ignored" in w]
    assert "aikit config trust" in warning and str(project) in warning
    assert config.origin("security.allowed_commands") == f"user file {user / 'aikit.toml'}"


def test_a_project_file_may_narrow_the_policy_without_trust(dirs: tuple[Path, Path]) -> None:
    project, _ = dirs
    write(project, '[security]\nallowed_commands = ["ls"]\nmax_tool_calls = 10\n[kernel]\nmax_memory_mb = 64\n')
    config = load(dirs)
    assert config.get("security.allowed_commands") == ["ls"]
    assert config.get("security.max_tool_calls") == 10
    assert config.get("kernel.max_memory_mb") == 64
    assert config.ignored == []
    assert config.origin("security.allowed_commands") == f"project file {project / 'aikit.toml'}"


def test_trust_covers_one_version_of_the_file(dirs: tuple[Path, Path]) -> None:
    project, _ = dirs
    write(project, '[security]\nallowed_commands = ["ls", "sh"]\n')
    trust(dirs)
    assert load(dirs).get("security.allowed_commands") == ["ls", "sh"]
    write(project, '[security]\nallowed_commands = ["ls", "sh", "python3"]\n')  # edited (by a script?)
    config = load(dirs)
    assert config.get("security.allowed_commands") == list(DEFAULTS["security"]["allowed_commands"])
    assert config.ignored == ["security.allowed_commands"]


def test_profiles_of_an_untrusted_project_file_are_filtered_too(dirs: tuple[Path, Path]) -> None:
    write(dirs[0], '[profiles.wide.security]\nallowed_hosts = ["evil.example"]\n')
    config = load(dirs, profile="wide")
    assert config.get("security.allowed_hosts") == []
    assert config.ignored == ["profiles.wide.security.allowed_hosts"]


def test_the_environment_can_trust_every_project_file(dirs: tuple[Path, Path]) -> None:
    write(dirs[0], '[security]\nallowed_commands = ["sh"]\n')
    assert load(dirs, env={"AIKIT_TRUST_PROJECT_CONFIG": "1"}).get("security.allowed_commands") == ["sh"]
def test_config_show_prints_the_effective_default_model(tmp_path) -> None:
    """Issue 17: the effective [models] default is shown even when nothing sets it."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    aikit = str(Path(sys.executable).with_name("aikit"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIKIT_")}
    (tmp_path / "user.toml").write_text("")
    env["AIKIT_CONFIG"] = str(tmp_path / "user.toml")
    out = subprocess.run([aikit, "config", "show"], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert '[models]\ndefault = "local/gemma3-270m"' in out.stdout
    shown = subprocess.run([aikit, "config", "show", "--json"], capture_output=True, text=True, timeout=60,
                           cwd=tmp_path, env={**env, "AIKIT_MODELS__DEFAULT": "openai/gpt-4o-mini"})
    assert json.loads(shown.stdout)["models"]["default"] == "openai/gpt-4o-mini"
