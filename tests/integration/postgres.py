"""A throwaway PostgreSQL server for the tests: Debian's initdb and pg_ctl (`make postgres`
installs them) on a free loopback port, its files in a temporary folder, stopped and deleted
at the end. PostgreSQL refuses to run as root, so as root it runs as the `postgres` user the
Debian package creates."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.integration.server import free_port

USER = "churn"


def pg_bin(name: str) -> str:
    """A PostgreSQL program: on PATH, else in Debian's /usr/lib/postgresql/<v>/bin (newest)."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                      key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if not versions:
        raise AssertionError(f"PostgreSQL's {name} is missing: run `make postgres` "
                             "(Debian's postgresql package)")
    return versions[-1]


@dataclass
class Postgres:
    root: Path
    port: int
    run_as: str | None  # the user the server runs as, when we are root

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(list(args), user=self.run_as, capture_output=True, text=True,
                              timeout=120, check=False, cwd=self.root)
        if proc.returncode != 0:
            log = (self.root / "server.log")
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise AssertionError(f"{Path(args[0]).name} failed: {proc.stderr[-2000:]}\n{tail}")
        return proc

    @classmethod
    def start(cls) -> Postgres:
        run_as = None
        root = Path(tempfile.mkdtemp(prefix="churn-pg-"))
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise AssertionError("running as root, the test server needs the `postgres` "
                                     "user of Debian's package: run `make postgres`") from None
            os.chown(root, owner.pw_uid, owner.pw_gid)
            run_as = "postgres"
        server = cls(root, free_port(), run_as)
        try:
            server._run(pg_bin("initdb"), "-D", str(root / "data"), "-A", "trust", "-U", USER,
                        "-E", "UTF8", "--no-sync")
            options = (f"-p {server.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
                       "-c synchronous_commit=off -c full_page_writes=off")
            server._run(pg_bin("pg_ctl"), "-D", str(root / "data"), "-o", options,
                        "-l", str(root / "server.log"), "-w", "-t", "60", "start")
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        return server

    def stop(self) -> None:
        try:
            self._run(pg_bin("pg_ctl"), "-D", str(self.root / "data"), "-m", "fast", "-w",
                      "-t", "60", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
