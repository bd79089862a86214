"""Datasette configuration and launch: the one place that knows how the database is served."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import uvicorn
import yaml
from datasette.app import Datasette
from datasette.database import Database

from monitor import publish, store

log = logging.getLogger(__name__)

DATABASE_NAME = "coverage"
SETTINGS: dict[str, Any] = {
    # Facet suggestions are most of the cost of a table page on a large archive (issue 6 figures).
    "suggest_facets": False,
    "default_page_size": 50,
    "max_returned_rows": 1000,
    "sql_time_limit_ms": 3000,
    "facet_time_limit_ms": 500,
    # The archive is for staff: no whole-database downloads.
    "allow_download": False,
}


PASSWORD_PREFIX = "MONITOR_PASSWORD_HASH_"  # noqa: S105 (a variable name, not a password)
"""Staff accounts: MONITOR_PASSWORD_HASH_ALICE=<hash> lets "alice" log in (monitor user add)."""
SECRET_VARIABLE = "MONITOR_SECRET"  # noqa: S105 (a variable name)
"""Signs login cookies; fixed, so logins survive a restart."""
_USERNAME = re.compile(r"^[a-z0-9_.-]{1,40}$")


def metadata(environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    text = resources.files("monitor").joinpath("datasette/metadata.yml").read_text("utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    queries = data["databases"]["coverage"]["queries"]
    queries["latest_headlines"]["sql"] = publish.HEADLINES_SQL
    queries["breaking_news"]["sql"] = publish.ATOM_SQL
    data["plugins"] = {"datasette-auth-passwords": auth_config(environ)}
    return data


def auth_config(environ: Mapping[str, str]) -> dict[str, Any]:
    """datasette-auth-passwords accounts from the environment; hashes never live in the repo."""
    config: dict[str, Any] = {"actors": {}}
    for variable in sorted(environ):
        if variable.startswith(PASSWORD_PREFIX):
            name = variable.removeprefix(PASSWORD_PREFIX).lower()
            if _USERNAME.match(name):
                config[f"{name}_password_hash"] = {"$env": variable}
                config["actors"][name] = {"id": name, "name": name}
    return config


def secret(environ: Mapping[str, str] = os.environ) -> str:
    value = environ.get(SECRET_VARIABLE)
    if value:
        return value
    log.warning(
        "%s is not set: staff logins will not survive a restart (set it to a long random string)",
        SECRET_VARIABLE,
    )
    return secrets.token_hex(32)


def build_datasette(db_path: Path | str, environ: Mapping[str, str] = os.environ) -> Datasette:
    """A Datasette over the coverage database under the fixed name 'coverage'."""
    db_path = Path(db_path)
    store.open_db(db_path).close()  # creates and migrates it, so Datasette sees the full schema
    templates = resources.files("monitor").joinpath("datasette/templates")
    ds = Datasette(
        metadata=metadata(environ),
        settings=SETTINGS,
        secret=secret(environ),
        template_dir=str(templates),
    )
    ds.add_database(Database(ds, path=str(db_path), is_mutable=True), name=DATABASE_NAME)
    return ds


async def _serve(db_path: Path, host: str, port: int) -> None:
    ds = build_datasette(db_path)
    await ds.invoke_startup()
    config = uvicorn.Config(ds.app(), host=host, port=port, log_level="warning", lifespan="on")
    log.info("Datasette serving %s on http://%s:%d/", db_path, host, port)
    await uvicorn.Server(config).serve()


def serve(db_path: Path | str, host: str = "127.0.0.1", port: int = 8001) -> None:
    asyncio.run(_serve(Path(db_path), host, port))
