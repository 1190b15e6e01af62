"""The console's pure parts: the stage waterfall from `stage_times`, the job list's filters."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from producer_api.console.data import decode_cursor, encode_cursor, timeline
from producer_api.console.routes import _parse_filters

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


def test_each_stage_lasts_until_the_next_began_and_the_last_until_completion() -> None:
    job = {
        "created_at": T0,
        "completed_at": T0 + timedelta(seconds=10),
        "updated_at": None,
        # out of order on purpose: jsonb keeps keys sorted, not by time
        "stage_times": {"complete": _at(10), "parsing": _at(1), "embedding": _at(6)},
    }
    bars = timeline(job)
    assert [b["stage"] for b in bars] == ["queued", "parsing", "embedding", "complete"]
    assert [b["duration_s"] for b in bars] == [1, 5, 4, 0]
    assert [round(b["left_pct"]) for b in bars] == [0, 10, 60, 100]
    assert bars[-1]["width_pct"] == 0.5  # an instant still shows as a sliver


def test_an_unfinished_job_runs_to_its_last_update() -> None:
    job = {
        "created_at": T0,
        "completed_at": None,
        "updated_at": T0 + timedelta(seconds=4),
        "stage_times": {"parsing": _at(2)},
    }
    assert [b["duration_s"] for b in timeline(job)] == [2, 2]


def test_filters_keep_what_is_valid_and_name_what_is_not() -> None:
    user = uuid.uuid4()
    f, problems = _parse_filters({"state": "deadletter", "user": str(user), "since": "2026-01-02"})
    assert (f.state, f.user, problems) == ("deadletter", user, [])
    assert f.since is not None and f.since.date().isoformat() == "2026-01-02"
    f, problems = _parse_filters({"state": "lost", "user": "bob", "until": "soon"})
    assert (f.state, f.user, f.until) == (None, None, None)
    assert problems == [
        "unknown state 'lost'",
        "user must be a uuid",
        "until must be a date or time (YYYY-MM-DD[THH:MM])",
    ]


def test_a_cursor_round_trips_and_a_forged_one_is_refused() -> None:
    job_id = uuid.uuid4()
    assert decode_cursor(encode_cursor(T0, job_id)) == (T0, job_id)
    assert decode_cursor("not-a-cursor") is None
