"""Scheduled runs leave a record: done, nothing done (with the reason) or failed (with the error)."""
from __future__ import annotations

import pytest

from visrec.models import RunOutcome, TaskRun
from visrec.services import runs

pytestmark = pytest.mark.django_db


def test_a_run_that_did_work_is_done_with_its_summary():
    with runs.recorded_run("job") as run:
        run.done("3 things", things=3)
    row = TaskRun.objects.get()
    assert (row.outcome, row.summary, row.details) == (RunOutcome.DONE, "3 things", {"things": 3})
    assert row.finished_at >= row.started_at


def test_a_failed_run_keeps_the_error_and_the_exception_propagates():
    with pytest.raises(ZeroDivisionError), runs.recorded_run("job"):
        1 / 0  # noqa: B018
    row = TaskRun.objects.get()
    assert row.outcome == RunOutcome.FAILED and row.summary.startswith("ZeroDivisionError")


def test_only_the_newest_runs_of_a_task_are_kept(monkeypatch):
    monkeypatch.setattr(runs, "KEEP_PER_TASK", 3)
    for i in range(5):
        with runs.recorded_run("job") as run:
            run.done(f"run {i}")
    with runs.recorded_run("other") as run:
        run.skipped("nothing")
    assert list(TaskRun.objects.filter(task="job").values_list("summary", flat=True)) == ["run 4", "run 3", "run 2"]
    last = runs.last_runs()
    assert (last["job"].summary, last["other"].outcome) == ("run 4", RunOutcome.SKIPPED)


def test_the_nightly_training_without_events_says_why_it_did_nothing(settings):
    from visrec.tasks import train_recommender

    result = train_recommender.apply().get()
    assert result["promoted"] is False
    row = runs.last_runs(["train_recommender"])["train_recommender"]
    assert row.outcome == RunOutcome.SKIPPED and row.summary == result["reason"]
