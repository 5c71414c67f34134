"""Push settings: all six credential files or none; a missing or bad one is named."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from elock_common import pki
from key_provisioner.api.main import create_app
from key_provisioner.core.config import PUSH_FILES, load_settings
from key_provisioner.core.crypto import MasterKey
from key_provisioner.core.errors import ConfigError

KEY = MasterKey.generate().to_text()


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> pki.PkiPaths:
    return pki.init_pki(tmp_path_factory.mktemp("pki"))


def _files(paths: pki.PkiPaths) -> dict[str, Path]:
    user = paths.racs_users["keyserver"]
    return {
        "racs_client_cert": user.cert,
        "racs_client_key": user.key,
        "racs_ca": paths.racs_ca.cert,
        "tls2_cert": paths.key_server.cert,
        "tls2_key": paths.key_server.key,
        "se_issuer_ca": paths.se_issuer_ca.cert,
    }


def test_no_push_settings_disable_pushing() -> None:
    assert load_settings(env={"ELOCK_MASTER_KEY": KEY}).push is None


def test_all_six_from_the_file_or_the_environment(paths: pki.PkiPaths, tmp_path: Path) -> None:
    files = _files(paths)
    config = tmp_path / "ks.toml"
    config.write_text(
        "[push]\n" + "".join(f'{k} = "{v}"\n' for k, v in files.items()) + "timeout = 12\n"
    )
    push = load_settings(config, env={"ELOCK_MASTER_KEY": KEY}).push
    assert push is not None and push.timeout == 12
    assert {name: getattr(push, name) for name in PUSH_FILES} == files
    env = {"ELOCK_MASTER_KEY": KEY} | {
        f"ELOCK_KEYSERVER_PUSH_{k.upper()}": str(v) for k, v in files.items()
    }
    from_env = load_settings(env=env | {"ELOCK_KEYSERVER_PUSH_TIMEOUT": "12"}).push
    assert from_env == push


def test_a_missing_credential_is_named(paths: pki.PkiPaths) -> None:
    env = {"ELOCK_MASTER_KEY": KEY} | {
        f"ELOCK_KEYSERVER_PUSH_{k.upper()}": str(v)
        for k, v in _files(paths).items()
        if k != "tls2_key"
    }
    missing = r"missing push\.tls2_key \(ELOCK_KEYSERVER_PUSH_TLS2_KEY"
    with pytest.raises(ConfigError, match=missing):
        load_settings(env=env)


def test_an_unreadable_file_is_named(paths: pki.PkiPaths, tmp_path: Path) -> None:
    env = {"ELOCK_MASTER_KEY": KEY} | {
        f"ELOCK_KEYSERVER_PUSH_{k.upper()}": str(v) for k, v in _files(paths).items()
    }
    env["ELOCK_KEYSERVER_PUSH_RACS_CA"] = str(tmp_path / "nope.pem")
    with pytest.raises(ConfigError, match=r"push\.racs_ca: cannot read .*nope\.pem"):
        load_settings(env=env)


def test_credentials_that_do_not_load_stop_the_app(paths: pki.PkiPaths, tmp_path: Path) -> None:
    env = {"ELOCK_MASTER_KEY": KEY} | {
        f"ELOCK_KEYSERVER_PUSH_{k.upper()}": str(v) for k, v in _files(paths).items()
    }
    env["ELOCK_KEYSERVER_PUSH_SE_ISSUER_CA"] = str(paths.key_server.key)  # a key, not a cert
    env["ELOCK_KEYSERVER_DATABASE_URL"] = f"sqlite:///{tmp_path}/ks.sqlite3"
    with pytest.raises(ConfigError, match=r"se_issuer_ca"):
        create_app(load_settings(env=env), check_migrations=False)


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"ELOCK_KEYSERVER_PUSH_TIMEOUT": "12"}, "push.timeout given without"),
        ({"ELOCK_KEYSERVER_PUSH_RACS_SERVER_NAME": "racs.example.org"}, "push.racs_server_name"),
    ],
)
def test_push_options_without_the_credentials_are_refused(
    given: dict[str, str], named: str, tmp_path: Path
) -> None:
    """Not "pushing disabled": a table half written, or a variable on the wrong machine."""
    every = ", ".join(f"push.{name} (ELOCK_KEYSERVER_PUSH_{name.upper()})" for name in PUSH_FILES)
    with pytest.raises(ConfigError, match=f"^{named}.*; missing {re.escape(every)}$"):
        load_settings(env={"ELOCK_MASTER_KEY": KEY} | given)
    config = tmp_path / "ks.toml"
    config.write_text("[push]\ntimeout = 12\n")
    with pytest.raises(ConfigError, match=r"^push\.timeout given without the push credentials"):
        load_settings(config, env={"ELOCK_MASTER_KEY": KEY})
    config.write_text('[push]\nracs_server_name = ""\n')  # empty: not given
    assert load_settings(config, env={"ELOCK_MASTER_KEY": KEY}).push is None
