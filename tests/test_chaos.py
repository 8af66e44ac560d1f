"""The chaos run, bounded to about 40 seconds: nothing accepted is lost, duplicated or reordered."""

from __future__ import annotations

from tests.chaos import run_chaos


def test_chaos_loses_nothing():
    report = run_chaos(duration=30.0, clients=20, events=3000, seed=7)
    print(report.summary())

    assert report.accepted >= 1500
    assert report.delivered > report.accepted
    assert report.lost == 0
    assert report.duplicated == 0
    assert report.out_of_order == 0
    assert report.unexpected == 0
    assert report.accepted_not_stored == 0
    assert report.gaps == 0
    # The failures really happened and forced clients to resume.
    assert report.slow_consumers_closed >= 1
    assert report.reconnects >= 2
    assert any("SIGKILLed" in action for action in report.actions)
    assert any("restarted redis" in action for action in report.actions)
    assert sum("killed" in action and "pubsub" in action for action in report.actions) == 2
