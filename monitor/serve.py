"""Datasette configuration and launch: the one place that knows how the database is served."""

from __future__ import annotations

import asyncio
import logging
from importlib import resources
from pathlib import Path
from typing import Any

import uvicorn
import yaml
from datasette.app import Datasette
from datasette.database import Database

from monitor import store

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


def metadata() -> dict[str, Any]:
    text = resources.files("monitor").joinpath("datasette/metadata.yml").read_text("utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def build_datasette(db_path: Path | str) -> Datasette:
    """A Datasette over the coverage database under the fixed name 'coverage'."""
    db_path = Path(db_path)
    store.open_db(db_path).close()  # creates and migrates it, so Datasette sees the full schema
    ds = Datasette(metadata=metadata(), settings=SETTINGS)
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
