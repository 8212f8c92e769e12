"""A throwaway PostgreSQL server on 127.0.0.1 for the deployment tests.

PostgreSQL refuses to run as root, and CI runs the tests as root: then the server runs as an
unprivileged account (`postgres` from Debian's package, else `nobody`), which owns its
temporary data directory.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import psycopg2
import pytest

SUPERUSER = "dagster"
DATABASE = "clinical_dagster"
SERVER_ACCOUNTS = ("postgres", "nobody")
DEBIAN_SERVERS = Path("/usr/lib/postgresql")


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    username: str
    password: str
    db_name: str

    @property
    def env(self) -> dict[str, str]:
        """The connection as deploy/dagster.yaml reads it from the environment."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_DB": self.db_name,
            "DAGSTER_PG_USERNAME": self.username,
            "DAGSTER_PG_PASSWORD": self.password,
        }

    def connect(self, db_name: str | None = None) -> Any:
        return psycopg2.connect(
            host=self.host,
            port=self.port,
            user=self.username,
            password=self.password,
            dbname=db_name or self.db_name,
            connect_timeout=10,
        )


def skip_or_fail(message: str) -> NoReturn:
    """Missing PostgreSQL is a skip locally and a failure in CI (`CI` set, as `.ci/run` runs)."""
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"{message} (required when CI is set)")
    pytest.skip(message)


def postgres_bin_or_skip() -> Path:
    """The folder holding initdb and pg_ctl: from PATH, else Debian's newest server."""
    folders = [Path(found).resolve().parent for found in [shutil.which("initdb")] if found]
    folders += sorted(
        DEBIAN_SERVERS.glob("*/bin"),
        key=lambda folder: int(folder.parent.name) if folder.parent.name.isdigit() else 0,
        reverse=True,
    )
    for folder in folders:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    skip_or_fail(
        f"PostgreSQL server binaries (initdb, pg_ctl) not on PATH nor under {DEBIAN_SERVERS}; "
        "install them with apt-get install postgresql"
    )


def server_account() -> pwd.struct_passwd | None:
    """Who runs the server: this user, or an unprivileged account when this is root."""
    if os.geteuid() != 0:
        return None
    for name in SERVER_ACCOUNTS:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    skip_or_fail(
        f"PostgreSQL cannot run as root and none of the accounts {', '.join(SERVER_ACCOUNTS)} "
        "exists to run it (useradd --system postgres)"
    )


def run_as(
    account: pwd.struct_passwd | None, argv: list[str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("PG")}
    return subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        user=account.pw_uid if account else None,
        group=account.pw_gid if account else None,
        extra_groups=[] if account else None,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def succeeded(done: subprocess.CompletedProcess[str], what: str, log: Path | None = None) -> None:
    if done.returncode == 0:
        return
    detail = (done.stdout + done.stderr).strip()
    if log is not None and log.exists():
        detail += "\n" + log.read_text(errors="replace")[-2000:]
    pytest.fail(f"{what} failed with exit status {done.returncode}:\n{detail}")


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[PostgresServer]:
    """A fresh server on a free port of 127.0.0.1 (no Unix socket), password authentication,
    one empty database; stopped and its directory removed afterwards."""
    binaries = postgres_bin_or_skip()
    account = server_account()
    base = Path(tempfile.mkdtemp(prefix="clinical-postgres-"))
    try:
        if account is not None:
            os.chown(base, account.pw_uid, account.pw_gid)
        password = secrets.token_hex(16)
        password_file = base / "password"
        password_file.write_text(password + "\n")
        password_file.chmod(0o600)
        if account is not None:
            os.chown(password_file, account.pw_uid, account.pw_gid)
        data = base / "data"
        initdb = [str(binaries / "initdb"), "-D", str(data), "-U", SUPERUSER]
        initdb += [f"--pwfile={password_file}", "--auth=scram-sha-256"]
        initdb += ["--encoding=UTF8", "--no-locale", "--no-sync"]
        succeeded(run_as(account, initdb, base), "initdb")
        password_file.unlink()
        port, log = free_port(), base / "server.log"
        options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories='' "
        options += "-c fsync=off"
        pg_ctl = [str(binaries / "pg_ctl"), "-D", str(data), "-w", "-t", "60"]
        succeeded(
            run_as(account, [*pg_ctl, "-l", str(log), "-o", options, "start"], base),
            "pg_ctl start",
            log,
        )
        try:
            server = PostgresServer("127.0.0.1", port, SUPERUSER, password, DATABASE)
            with closing(server.connect("postgres")) as connection:
                connection.autocommit = True
                with connection.cursor() as cursor:
                    cursor.execute(f"CREATE DATABASE {DATABASE}")
            yield server
        finally:
            run_as(account, [*pg_ctl, "-m", "fast", "stop"], base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
