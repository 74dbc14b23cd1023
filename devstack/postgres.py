"""A private PostgreSQL for development and tests: initdb once in a data dir, then serve on 127.0.0.1."""

from __future__ import annotations

import contextlib
import grp
import hashlib
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
from psycopg import sql

from devstack import binaries
from devstack.errors import DevstackError, StartupError
from devstack.process import ManagedProcess, Server

USER = "tweetmesh"
DATABASE = "tweetmesh"
# PostgreSQL refuses to run as root; as root we run it as this user instead.
UNPRIVILEGED_USER = "nobody"
UNPRIVILEGED_GROUPS = ("nogroup", "nobody")


def _unprivileged_ids() -> tuple[int, int] | None:
    """(uid, gid) to run PostgreSQL as, or None to run it as ourselves (when we are not root)."""
    if os.geteuid() != 0:
        return None
    try:
        account = pwd.getpwnam(UNPRIVILEGED_USER)
    except KeyError:
        raise DevstackError(
            f"running as root, PostgreSQL must run as an unprivileged user, and there is no user"
            f" {UNPRIVILEGED_USER!r}: run as an ordinary user, or set DATABASE_URL to a running server"
        ) from None
    for name in UNPRIVILEGED_GROUPS:
        try:
            return account.pw_uid, grp.getgrnam(name).gr_gid
        except KeyError:
            continue
    return account.pw_uid, account.pw_gid


def _blocked_at(path: Path, uid: int, gid: int) -> tuple[Path, os.stat_result] | None:
    """The first folder on the way to `path` that `uid` may not enter, if any."""
    for directory in [path, *path.parents]:
        if not directory.exists():
            continue
        info = directory.stat()
        if info.st_uid == uid:
            bit = stat.S_IXUSR
        elif info.st_gid == gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not info.st_mode & bit:
            return directory, info
    return None


def _require_traversable(path: Path, uid: int, gid: int, what: str) -> None:
    """Fails clearly when `uid` cannot reach `path`."""
    blocked = _blocked_at(path, uid, gid)
    if blocked is not None:
        directory, info = blocked
        raise DevstackError(
            f"PostgreSQL runs as user {UNPRIVILEGED_USER!r} because this runs as root, and that user"
            f" cannot enter {directory} (mode {stat.filemode(info.st_mode)}), which holds {what}."
            " Set TWEETMESH_DATA_DIR to a directory it can reach (e.g. /tmp/tweetmesh-data),"
            f" let it in (chmod o+x {directory}), or run as an ordinary user."
        )


def _reachable_home(data_dir: Path, uid: int, gid: int) -> Path:
    """Where PostgreSQL's files go when it runs as `uid`: `data_dir` if that user can reach it,
    else a folder of ours under /var/tmp named after `data_dir`, which it can.

    A checkout in root's home (/root is mode 700) is out of the unprivileged user's reach, and
    making it reachable would mean opening root's home to every user. /var/tmp is world-traversable
    and, unlike /tmp, kept across reboots, as a development database should be. The folder is
    root's, mode 711 (others may pass through it, not list it), and holds only PostgreSQL's data
    dir (the unprivileged user's, mode 700) and a copy of the binaries if need be.
    """
    if _blocked_at(data_dir, uid, gid) is None:
        return data_dir
    digest = hashlib.sha256(os.fsencode(data_dir)).hexdigest()[:12]
    base = Path("/var/tmp") if Path("/var/tmp").is_dir() else Path(tempfile.gettempdir())
    home = base / f"tweetmesh-{os.geteuid()}-{digest}"
    with contextlib.suppress(FileExistsError):
        home.mkdir(mode=0o711)
    info = home.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        # Someone else made it first (the name is predictable): never use another user's folder.
        raise DevstackError(
            f"{home} exists but is not a directory owned by this user; remove it, or set TWEETMESH_DATA_DIR"
            f" to a directory user {UNPRIVILEGED_USER!r} can reach"
        )
    home.chmod(0o711)
    _require_traversable(home, uid, gid, what="the PostgreSQL data dir")
    return home


def _point_to(link: Path, target: Path) -> None:
    """Makes `link` a symbolic link to `target`, unless something else is already there."""
    if link.is_symlink():
        if Path(os.readlink(link)) == target:
            return
        link.unlink()
    elif link.exists():
        return  # a real folder (an older data dir): leave it alone
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target, target_is_directory=True)


def _reachable_copy(bins: binaries.PostgresBinaries, target: Path) -> binaries.PostgresBinaries:
    """A copy, made once under `target`, of the installation (<pkg>/pginstall/{bin,lib,share}) and
    of the wheel's bundled libraries (<pkg>.libs), in the same layout so the binaries' relative
    RPATH ($ORIGIN/../../../<pkg>.libs) still finds them."""
    install = bins.postgres.parent.parent
    package = install.parent
    copied = target / package.name / install.name
    if not (copied / "bin" / bins.postgres.name).exists():
        shutil.copytree(install, copied, symlinks=True, dirs_exist_ok=True)
        libs = package.parent / f"{package.name}.libs"
        if libs.is_dir():
            shutil.copytree(libs, target / libs.name, symlinks=True, dirs_exist_ok=True)
    return binaries.PostgresBinaries(copied / "bin" / bins.initdb.name, copied / "bin" / bins.postgres.name)


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    if root.stat().st_uid == uid:
        return  # chowned on an earlier run
    os.chown(root, uid, gid)
    for parent, dirs, files in os.walk(root):
        for name in dirs + files:
            os.chown(os.path.join(parent, name), uid, gid, follow_symlinks=False)


def _major_version(postgres: Path) -> str:
    out = subprocess.run([postgres, "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"(\d+)(?:\.\d+)?", out)
    return match.group(1) if match else out.strip()


def _initdb(
    bins: binaries.PostgresBinaries,
    pgdata: Path,
    durable: bool,
    log_path: Path | None,
    ids: tuple[int, int] | None,
) -> None:
    pgdata.mkdir(mode=0o700, parents=True, exist_ok=True)
    if ids is not None:
        _chown_tree(pgdata, *ids)
    argv = [os.fspath(bins.initdb), "-D", os.fspath(pgdata), "-U", USER, "-A", "trust"]
    argv += ["-E", "UTF8", "--no-locale"]
    if not durable:
        argv.append("--no-sync")
    uid, gid = ids if ids is not None else (None, None)
    done = subprocess.run(
        argv,
        check=False,
        cwd=pgdata,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
        user=uid,
        group=gid,
        extra_groups=[] if ids is not None else None,
    )
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("a") as log:
            log.write(done.stdout)
    if done.returncode != 0:
        tail = "\n".join(done.stdout.splitlines()[-30:])
        raise StartupError(f"initdb failed (exit code {done.returncode}) for {pgdata}:\n{tail}")


def _accepts_connections(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


def _create_database(admin_url: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))


def _placed(data_dir: Path, folder: str) -> tuple[binaries.PostgresBinaries, Path, tuple[int, int] | None]:
    """The binaries, the data dir (`data_dir`/`folder`, or where its unprivileged user can reach it
    when this runs as root: see _reachable_home) and the (uid, gid) to run them as, if not ours."""
    bins = binaries.postgres_binaries()
    pgdata = data_dir.resolve() / folder
    ids = _unprivileged_ids()
    if ids is not None:
        home = _reachable_home(data_dir.resolve(), *ids)
        if home != data_dir.resolve():
            pgdata = home / folder
            _point_to(data_dir.resolve() / folder, pgdata)
            print(
                f"devstack: PostgreSQL runs as {UNPRIVILEGED_USER!r} (this runs as root), who cannot reach"
                f" {data_dir}: its files are in {pgdata}",
                file=sys.stderr,
                flush=True,
            )
        if _blocked_at(bins.postgres.parent, *ids) is not None:
            # PyPI's binaries inside a private checkout: use a copy it can reach.
            bins = _reachable_copy(bins, home / "pginstall")
        _require_traversable(bins.postgres.parent, *ids, what="the PostgreSQL binaries")
    return bins, pgdata, ids


def _serve(
    name: str,
    bins: binaries.PostgresBinaries,
    pgdata: Path,
    ids: tuple[int, int] | None,
    port: int,
    settings: dict[str, str],
    log_path: Path | None,
    timeout: float,
) -> ManagedProcess:
    """Runs postgres on `pgdata` on 127.0.0.1:`port`; returns once it accepts connections."""
    if ids is not None:
        _chown_tree(pgdata, *ids)
    settings = {
        "listen_addresses": "127.0.0.1",
        "port": str(port),
        "unix_socket_directories": "",
        "log_min_messages": "warning",
        "log_checkpoints": "off",
        # No DETAIL, HINT or CONTEXT in the server's log: a refused row's DETAIL quotes the row (a
        # password hash among its columns); the statement is logged without its parameters.
        "log_error_verbosity": "terse",
    } | settings
    argv = [os.fspath(bins.postgres), "-D", os.fspath(pgdata)]
    for key, value in settings.items():
        argv += ["-c", f"{key}={value}"]
    process = ManagedProcess(
        name,
        argv,
        log_path=log_path,
        cwd=pgdata,
        # SIGINT is PostgreSQL's "fast" shutdown; SIGTERM would wait for every client to leave.
        stop_signal=signal.SIGINT,
        user=ids[0] if ids else None,
        group=ids[1] if ids else None,
    )
    try:
        admin_url = f"postgresql://{USER}@127.0.0.1:{port}/postgres"
        process.wait_until(lambda: _accepts_connections(admin_url), timeout, "accepting connections")
    except BaseException:
        process.stop()
        raise
    return process


def _not_durable(durable: bool) -> dict[str, str]:
    """Tests' settings: no fsync nor full-page writes; fast, and fine for data a crash may lose."""
    return {} if durable else {"fsync": "off", "full_page_writes": "off", "synchronous_commit": "off"}


def start_postgres(
    data_dir: Path, port: int, *, durable: bool = True, log_path: Path | None = None, timeout: float = 60.0
) -> Server:
    """Starts PostgreSQL with its files in `data_dir`/postgres (as root, if its unprivileged user
    cannot reach that, in a folder it can, linked from there: see _reachable_home); returns it with
    the tweetmesh URL.

    Loopback only, trust authentication (replication connections from 127.0.0.1 too:
    start_replica), no unix sockets. `durable=False` (tests) turns off fsync and full-page writes:
    fast, and fine for data that a crash of the machine may lose.
    """
    bins, pgdata, ids = _placed(data_dir, "postgres")
    if not (pgdata / "PG_VERSION").exists():
        _initdb(bins, pgdata, durable, log_path, ids)
    made_by, running = (pgdata / "PG_VERSION").read_text().strip(), _major_version(bins.postgres)
    if made_by != running:
        raise DevstackError(
            f"{pgdata} was created by PostgreSQL {made_by}, but the postgres found is version {running}"
            f" ({bins.postgres}). Use another TWEETMESH_DATA_DIR, or delete {pgdata}."
        )
    process = _serve("postgres", bins, pgdata, ids, port, _not_durable(durable), log_path, timeout)
    try:
        _create_database(f"postgresql://{USER}@127.0.0.1:{port}/postgres")
    except BaseException:
        process.stop()
        raise
    return Server(process, f"postgresql://{USER}@127.0.0.1:{port}/{DATABASE}")


REPLICA_FOLDER = "postgres-replica"


def start_replica(
    primary: Server,
    data_dir: Path,
    port: int,
    *,
    durable: bool = True,
    log_path: Path | None = None,
    timeout: float = 60.0,
) -> Server:
    """Starts a streaming replica of `primary` (a PostgreSQL of start_postgres, in the same
    `data_dir`) on `port`; returns it with the tweetmesh URL (read-only).

    Made afresh at each start: a base backup of the primary (`pg_basebackup -R`, which also writes
    the replica's `standby.signal` and how to reach the primary), into `data_dir`/postgres-replica,
    then a hot standby on it that replays the primary's WAL as it is streamed.
    """
    bins, pgdata, ids = _placed(data_dir, REPLICA_FOLDER)
    shutil.rmtree(pgdata, ignore_errors=True)
    pgdata.mkdir(mode=0o700, parents=True)
    if ids is not None:
        _chown_tree(pgdata, *ids)
    source = primary.url.rsplit("/", 1)[0] + "/postgres"
    argv = [os.fspath(bins.postgres.parent / "pg_basebackup"), "-D", os.fspath(pgdata)]
    argv += ["-d", source, "-R", "-X", "stream", "-c", "fast"]
    if not durable:
        argv.append("--no-sync")
    done = subprocess.run(
        argv,
        check=False,
        cwd=pgdata,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        user=ids[0] if ids else None,
        group=ids[1] if ids else None,
        extra_groups=[] if ids is not None else None,
    )
    if done.returncode != 0:
        raise StartupError(
            f"pg_basebackup of {source} failed (exit code {done.returncode}): {done.stderr.strip()}"
        )
    settings = _not_durable(durable) | {
        "hot_standby": "on",
        # The primary keeps the rows a replica's query still reads, instead of the replica
        # cancelling the query when replay would remove them.
        "hot_standby_feedback": "on",
    }
    process = _serve("postgres-replica", bins, pgdata, ids, port, settings, log_path, timeout)
    return Server(process, f"postgresql://{USER}@127.0.0.1:{port}/{DATABASE}")
