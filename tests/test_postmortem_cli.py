"""`hotwash postmortem --incident ID` and `hotwash postmortem export ID`, then the jobs CLI:
`hotwash jobs list | run` and `hotwash digest` (on the embedded SQLite default)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.approval import Approvers
from bot.audit.store import build_store
from bot.cli import app
from bot.domain import Alert
from bot.postmortem import approve_postmortem
from bot.settings import Settings
from tests.test_timeline import seed_incident

runner = CliRunner()


def test_postmortem_draft_then_export(tmp_path: Path) -> None:
    store = build_store(Settings())
    try:
        incident_id = seed_incident(store, channel="C0ALERTS", thread_ts="1795874400.000000")
    finally:
        store.close()

    drafted = runner.invoke(app, ["postmortem", "--incident", str(incident_id)])
    assert drafted.exit_code == 0, drafted.output
    assert "# Postmortem: checkout 5xx ratio above 5%" in drafted.output
    assert "## Root cause" in drafted.output
    assert "Slack was not consulted (no client)" in drafted.output
    assert "postmortem draft #2 stored pending (evidence-only)" in drafted.output

    early = runner.invoke(app, ["postmortem", "export", "2"])
    assert early.exit_code == 1 and "pending; approve it first" in early.output

    store = build_store(Settings())
    try:
        approve_postmortem(store=store, draft_id=2, actor="U0LEAD",
                           approvers=Approvers(user_ids=frozenset({"U0LEAD"})))
    finally:
        store.close()
    exported = runner.invoke(app, ["postmortem", "export", "2", "--out", "pm.md"])
    assert exported.exit_code == 0, exported.output
    text = (tmp_path / "pm.md").read_text()
    assert text.startswith("# Postmortem: checkout 5xx ratio above 5%")
    assert "_Approved by U0LEAD on " in text

    edits = runner.invoke(app, ["postmortem", "edits"])
    assert edits.exit_code == 0, edits.output
    assert "Root cause" in edits.output and "0.00" in edits.output

    missing = runner.invoke(app, ["postmortem", "--incident", "99"])
    assert missing.exit_code == 1 and "no incident 99" in missing.output
    assert runner.invoke(app, ["postmortem", "export", "1"]).exit_code == 1  # a triage draft


def test_jobs_list_run_and_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOTWASH_ALERT_CHANNELS", '["C1"]')
    monkeypatch.setenv("HOTWASH_DIGEST_CRON", "0 * * * *; 0 9 * * *")
    store = build_store(Settings())
    try:
        store.open_incident(alert=Alert(name="CheckoutHighErrorRate", fingerprint="fp",
                                        severity="critical", channel="C1",
                                        labels={"service": "checkout"}), window_s=3600)
    finally:
        store.close()

    listed = runner.invoke(app, ["jobs", "list"])
    assert listed.exit_code == 0, listed.output
    for job_id in ("digest:C1", "digest:C1:1", "reindex", "retention"):
        assert job_id in listed.output
    assert "never" in listed.output

    ran = runner.invoke(app, ["jobs", "run", "retention"])
    assert ran.exit_code == 0, ran.output
    assert "purged 0 raw payload bodies and 0 evidence blobs" in ran.output
    relisted = runner.invoke(app, ["jobs", "list"])
    retention_row = next(line for line in relisted.output.splitlines() if "retention" in line)
    assert " ok " in retention_row

    assert runner.invoke(app, ["jobs", "run", "digest"]).exit_code == 2  # needs --channel
    assert runner.invoke(app, ["jobs", "run", "nope"]).exit_code == 2

    digest = runner.invoke(app, ["digest", "--channel", "C1", "--window", "1h"])
    assert digest.exit_code == 0, digest.output
    assert "**Alerts:** 1 (1 firing, 0 resolved)" in digest.output
    assert "**By service:** checkout 1" in digest.output
    bad = runner.invoke(app, ["digest", "--window", "soon"])
    assert bad.exit_code == 2 and "expected a duration" in bad.output
