"""An older database (a column missing from a table) opens with its rows kept and the column added."""

from __future__ import annotations

import sqlite3

from sqlalchemy import inspect

from harness.store import Store


def test_a_column_added_later_is_added_to_an_old_database(tmp_path):
    db = tmp_path / "old.db"
    Store(f"sqlite:///{db}").close()
    con = sqlite3.connect(db)
    con.execute(
        "INSERT INTO runs (id, plan_name, plan_path, plan_fingerprint, plan_json, status, tag, "
        "harness_version, started_at) VALUES ('r1', 'p', 'p.yaml', 'f', '{}', 'finished', '', '0', "
        "'2026-01-01 00:00:00')"
    )
    con.commit()
    con.execute("ALTER TABLE samples DROP COLUMN extracted")  # as a database from before that column
    con.commit()
    con.close()
    store = Store(f"sqlite:///{db}")
    columns = {c["name"] for c in inspect(store.engine).get_columns("samples")}
    assert "extracted" in columns
    assert [r.id for r in store.runs()] == ["r1"]
