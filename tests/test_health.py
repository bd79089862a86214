from __future__ import annotations

from datetime import UTC, datetime, timedelta

from monitor.health import MAX_BACKOFF, flag, next_poll

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def test_success_polls_at_the_interval():
    assert next_poll(NOW, 600, 0) == NOW + timedelta(minutes=10)


def test_failures_back_off_and_are_capped_at_a_day_but_never_stop():
    waits = [next_poll(NOW, 600, n) - NOW for n in range(1, 12)]
    assert waits[:4] == [timedelta(minutes=m) for m in (10, 20, 40, 80)]
    assert waits == sorted(waits)
    assert max(waits) == MAX_BACKOFF
    assert next_poll(NOW, 600, 10_000) - NOW == MAX_BACKOFF


def test_retry_after_wins_when_later():
    later = NOW + timedelta(hours=5)
    assert next_poll(NOW, 600, 1, later) == later
    assert next_poll(NOW, 600, 1, NOW + timedelta(seconds=1)) == NOW + timedelta(minutes=10)


def test_flag_failing_after_three_failures():
    assert flag(NOW, 600, 2, NOW, []) is None
    assert flag(NOW, 600, 3, NOW - timedelta(hours=2), []) == (
        "failing: 3 polls in a row since 2026-11-25 10:00 UTC"
    )
    assert flag(NOW, 600, 5, None, []) == "failing: 5 polls in a row (never succeeded)"


def test_flag_silent_compared_with_the_usual_rate():
    hourly = [NOW - timedelta(hours=h) for h in range(30, 25, -1)]  # new every hour, until 26h ago
    assert (
        flag(NOW, 600, 0, NOW, hourly) == "silent: nothing new for 26 hours (usually every 1 hours)"
    )
    recent = [NOW - timedelta(hours=h) for h in range(5, 0, -1)]
    assert flag(NOW, 600, 0, NOW, recent) is None
    weekly = [NOW - timedelta(days=d) for d in (35, 28, 21, 14, 7)]  # a slow source is not silent
    assert flag(NOW, 600, 0, NOW, weekly) is None
    assert flag(NOW, 600, 0, NOW, hourly[:2]) is None  # too little history to judge
