"""The embedded PostgreSQL's tuning (shop_demo/devservices.py)."""
from __future__ import annotations

from shop_demo import devservices


def test_shared_buffers_is_written_once_and_included(tmp_path, monkeypatch):
    monkeypatch.setattr(devservices, "PGDATA", tmp_path)
    (tmp_path / "postgresql.conf").write_text("#shared_buffers = 128MB\n")
    monkeypatch.setenv("VISREC_PG_SHARED_BUFFERS_MB", "300")
    devservices._tune_postgres()
    devservices._tune_postgres()
    conf = (tmp_path / "postgresql.conf").read_text()
    assert conf.count("include_if_exists = 'visrec.conf'") == 1
    assert (tmp_path / "visrec.conf").read_text() == "shared_buffers = 300MB\n"


def test_shared_buffers_defaults_to_a_quarter_of_memory_within_bounds(monkeypatch):
    monkeypatch.delenv("VISREC_PG_SHARED_BUFFERS_MB", raising=False)
    pages = {"SC_PAGE_SIZE": 4096}
    monkeypatch.setattr(devservices.os, "sysconf", lambda name: pages.get(name, pages["phys"]))
    monkeypatch.setattr(devservices, "_cgroup_memory_limit", lambda: None)
    for total_mb, expected in ((256, 128), (4096, 1024), (65536, 2048)):
        pages["phys"] = total_mb * 2**20 // 4096
        assert devservices.shared_buffers_mb() == expected
    monkeypatch.setattr(devservices, "_cgroup_memory_limit", lambda: 2 * 2**30)  # a 2 GB container on a big host
    assert devservices.shared_buffers_mb() == 512
