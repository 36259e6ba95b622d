"""`hotwash db`, `hotwash drafts` and `hotwash audit` as an operator would use them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from bot.audit import schema
from bot.audit.chain import event_hash
from bot.audit.models import GENESIS_HASH
from bot.audit.schema import make_engine
from bot.audit.store import AuditStore
from bot.cli import app
from bot.domain import Draft, DraftKind

runner = CliRunner()


def hotwash(*args: str, input: str | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), input=input)
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes else "")


@pytest.fixture
def cli_db(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A database the CLI uses via HOTWASH_DATABASE_URL, migrated with `hotwash db upgrade`,
    with approvers U_ALICE and U_BOB."""
    monkeypatch.setenv("HOTWASH_DATABASE_URL", db_url)
    monkeypatch.setenv("HOTWASH_APPROVERS", '["U_ALICE", "U_BOB"]')
    code, output = hotwash("db", "upgrade")
    assert code == 0, output
    assert f"empty -> {schema.head_revision()}" in output
    return db_url


def add_draft(db_url: str, markdown: str = "# Checkout 5xx\n\nPool exhausted [E1]\n") -> int:
    store = AuditStore(engine=make_engine(db_url))
    try:
        draft = store.save_draft(draft=Draft(kind=DraftKind.TRIAGE, content={},
                                             markdown=markdown, model="evidence-only"))
        assert draft.id is not None
        return draft.id
    finally:
        store.close()


def test_db_current_says_when_an_upgrade_is_needed(db_url: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOTWASH_DATABASE_URL", db_url)
    monkeypatch.setenv("HOTWASH_AUTO_MIGRATE", "false")
    code, output = hotwash("db", "current")
    assert code == 1 and "run `hotwash db upgrade`" in output
    code, output = hotwash("drafts", "list")
    assert code == 1 and "run `hotwash db upgrade`" in output
    assert hotwash("db", "upgrade")[0] == 0
    code, output = hotwash("db", "current")
    assert code == 0 and "up to date" in output
    code, output = hotwash("db", "downgrade", "base", "--yes")
    assert code == 0 and f"{schema.head_revision()} -> empty" in output
    assert hotwash("db", "current")[0] == 1


def test_list_show_approve_with_edit(cli_db: str, tmp_path: Path) -> None:
    first = add_draft(cli_db)
    second = add_draft(cli_db, "# Second draft\n")
    code, output = hotwash("drafts", "list", "--status", "pending")
    assert code == 0 and "Checkout 5xx" in output and "Second draft" in output
    edited = tmp_path / "edited.md"
    edited.write_text("# Checkout 5xx\n\nPool exhausted after v2.14.0 [E1]\n")
    code, output = hotwash("drafts", "approve", str(first), "--as", "U_ALICE",
                           "--edit", str(edited))
    assert code == 0, output
    assert "edit_approve by U_ALICE" in output and "+Pool exhausted after v2.14.0" in output
    code, output = hotwash("drafts", "list", "--status", "pending")
    assert "Second draft" in output and "Checkout 5xx" not in output
    code, output = hotwash("drafts", "show", str(first))
    assert code == 0
    for expected in ("approved", "edit_approve by U_ALICE", "draft.created", "draft.edited",
                     "draft.approved", "-Pool exhausted [E1]"):
        assert expected in output, expected
    code, output = hotwash("drafts", "reject", str(second), "--as", "U_BOB",
                           "--reason", "duplicate of the first")
    assert code == 0 and "reject by U_BOB" in output and "duplicate of the first" in output


def test_cli_refuses_non_approvers_and_records_who_ran_it(cli_db: str) -> None:
    draft_id = add_draft(cli_db)
    code, output = hotwash("drafts", "approve", str(draft_id), "--as", "U_MALLORY")
    assert code == 1 and "refused: U_MALLORY is not an approver" in output
    code, output = hotwash("drafts", "show", str(draft_id))
    assert "pending" in output and "draft.refused" in output
    assert hotwash("drafts", "approve", str(draft_id), "--as", "U_BOB")[0] == 0
    code, output = hotwash("audit", "export", "--format", "jsonl")
    events = [json.loads(line) for line in output.splitlines()]
    approved = [e for e in events if e["type"] == "draft.approved"]
    assert approved[0]["payload"]["via"].startswith("cli:")


def test_cli_errors_on_unknown_and_decided_drafts(cli_db: str) -> None:
    code, output = hotwash("drafts", "approve", "999", "--as", "U_ALICE")
    assert code == 1 and "no draft 999" in output
    code, output = hotwash("drafts", "show", "999")
    assert code == 1 and "no draft 999" in output
    draft_id = add_draft(cli_db)
    assert hotwash("drafts", "reject", str(draft_id), "--as", "U_ALICE", "--reason", "no")[0] == 0
    code, output = hotwash("drafts", "approve", str(draft_id), "--as", "U_BOB")
    assert code == 1 and "already rejected by U_ALICE" in output


def test_export_is_independently_verifiable(cli_db: str, tmp_path: Path) -> None:
    for _ in range(3):
        add_draft(cli_db)
    target = tmp_path / "audit.jsonl"
    code, output = hotwash("audit", "export", "--format", "jsonl", "--output", str(target))
    assert code == 0 and "exported 3 events" in output
    prev = GENESIS_HASH
    for line in target.read_text().splitlines():
        event = json.loads(line)
        assert event["prev_hash"] == prev
        assert event["hash"] == event_hash(prev_hash=prev, seq=event["seq"], at=event["at"],
                                           type=event["type"], subject=event["subject"],
                                           payload=event["payload"])
        prev = event["hash"]
    code, output = hotwash("audit", "export", "--format", "csv")
    assert code == 2


# --- tamper detection: what `hotwash audit verify` is for --------------------------------


def chain_of_five(db_url: str) -> None:
    for i in range(5):
        add_draft(db_url, f"# draft {i}\n")
    code, output = hotwash("audit", "verify")
    assert code == 0 and "audit chain OK: 5 events" in output, output


def raw_sql(db_url: str, *statements: str) -> None:
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        engine.dispose()


def test_verify_catches_an_edited_row(cli_db: str) -> None:
    chain_of_five(cli_db)
    raw_sql(cli_db, "UPDATE events SET payload = replace(payload, 'evidence-only', 'gpt-4o') "
                    "WHERE seq = 3")
    code, output = hotwash("audit", "verify")
    assert code == 1
    assert "BROKEN at event #3" in output and "edited" in output


def test_verify_catches_an_edited_row_whose_hash_was_recomputed(cli_db: str) -> None:
    chain_of_five(cli_db)
    engine = make_engine(cli_db)
    try:
        with engine.begin() as conn:
            row = conn.execute(text("SELECT seq, at, type, subject, payload, prev_hash "
                                    "FROM events WHERE seq = 2")).one()
            payload = json.loads(row.payload) | {"model": "forged"}
            forged = event_hash(prev_hash=row.prev_hash, seq=2, at=row.at, type=row.type,
                                subject=row.subject, payload=payload)
            conn.execute(text("UPDATE events SET payload = :p, hash = :h WHERE seq = 2"),
                         {"p": json.dumps(payload), "h": forged})
    finally:
        engine.dispose()
    code, output = hotwash("audit", "verify")
    assert code == 1 and "BROKEN at event #3" in output and "prev_hash" in output


def test_verify_catches_a_deleted_row(cli_db: str) -> None:
    chain_of_five(cli_db)
    raw_sql(cli_db, "DELETE FROM events WHERE seq = 2")
    code, output = hotwash("audit", "verify")
    assert code == 1 and "BROKEN at event #2" in output and "missing" in output


def test_verify_catches_a_deleted_tail(cli_db: str) -> None:
    chain_of_five(cli_db)
    raw_sql(cli_db, "DELETE FROM events WHERE seq = 5")
    code, output = hotwash("audit", "verify")
    assert code == 1 and "BROKEN at event #5" in output and "tail deleted" in output


def test_verify_catches_reordered_rows(cli_db: str) -> None:
    chain_of_five(cli_db)
    raw_sql(cli_db, "UPDATE events SET seq = -1 WHERE seq = 2",
            "UPDATE events SET seq = 2 WHERE seq = 3",
            "UPDATE events SET seq = 3 WHERE seq = -1")
    code, output = hotwash("audit", "verify")
    assert code == 1 and "BROKEN at event #2" in output


# --- records the chain vouches for: edits outside the events table are caught too -------


def approved_draft(db_url: str) -> int:
    draft_id = add_draft(db_url)
    assert hotwash("drafts", "approve", str(draft_id), "--as", "U_ALICE")[0] == 0
    return draft_id


@pytest.mark.parametrize(("statement", "expected"), [
    ("UPDATE drafts SET markdown = 'nothing to see' WHERE id = {d}",
     "draft #{d} text or model does not match event #2"),
    ("UPDATE drafts SET status = 'pending' WHERE id = {d}",
     "draft #{d} is pending but event #3 made it approved"),
    ("UPDATE decisions SET actor = 'U_EVE' WHERE draft_id = {d}",
     "decision on draft #{d} does not match event #3"),
    ("DELETE FROM decisions WHERE draft_id = {d}",
     "decision on draft #{d} recorded by event #3 is missing"),
    ("UPDATE received SET body = '\\x7b7d' WHERE id = 1",
     "received #1 body does not match the digest in event #1"),
])
def test_verify_catches_records_edited_behind_the_log(cli_db: str, statement: str,
                                                      expected: str) -> None:
    store = AuditStore(engine=make_engine(cli_db))
    try:
        store.record_received(source="alertmanager", body=b'{"a": 1}', headers={})
    finally:
        store.close()
    draft_id = approved_draft(cli_db)
    assert hotwash("audit", "verify")[0] == 0
    sql = statement.format(d=draft_id)
    if "received" in sql and cli_db.startswith("sqlite"):
        sql = sql.replace("'\\x7b7d'", "X'7b7d'")
    raw_sql(cli_db, sql)
    code, output = hotwash("audit", "verify")
    assert code == 1 and expected.format(d=draft_id) in output.replace("\n", " "), output


def test_purged_bodies_are_not_tampering(cli_db: str) -> None:
    store = AuditStore(engine=make_engine(cli_db))
    try:
        store.record_received(source="alertmanager", body=b'{"a": 1}', headers={})
    finally:
        store.close()
    raw_sql(cli_db, "UPDATE received SET body = NULL WHERE id = 1")
    code, output = hotwash("audit", "verify")
    assert code == 0 and "audit chain OK: 1 events" in output


def test_draft_text_that_looks_like_markup_is_shown_literally(cli_db: str,
                                                              tmp_path: Path) -> None:
    draft_id = add_draft(cli_db, "# Fix [/b] the [red]pool[/red]\n")
    code, output = hotwash("drafts", "list")
    assert code == 0 and "Fix [/b] the [red]pool[/red]" in output
    edited = tmp_path / "e.md"
    edited.write_text("# Fix [/b] the [red]pool[/red] now\n")
    code, output = hotwash("drafts", "approve", str(draft_id), "--as", "U_ALICE",
                           "--edit", str(edited))
    assert code == 0 and "+# Fix [/b] the [red]pool[/red] now" in output
    assert hotwash("drafts", "show", str(draft_id))[0] == 0
