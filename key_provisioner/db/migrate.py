"""Alembic, driven from code: the migrations ship inside the package.

``script_location`` is ``key_provisioner:migrations``, so ``elock-keyserver
migrate`` works from an installed wheel without an ``alembic.ini``.
"""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from key_provisioner.core.errors import ConfigError

SCRIPT_LOCATION = "key_provisioner:migrations"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def downgrade(engine: Engine, revision: str) -> None:
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def require_current(engine: Engine) -> None:
    """Refuse to serve a database that is behind (or ahead of) this code."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise ConfigError(
            f"the database is at migration {current or '(none)'}, this code needs {head};"
            " run `elock-keyserver migrate`"
        )
