"""The health page: the numbers match the state built here; a fresh install and a broker that is
down give a page that says so, never a 500; staff with the permission only."""
from __future__ import annotations

import datetime as dt
import re
import time

import pytest
from celery import current_app
from django.contrib.auth.models import Permission
from django.utils import timezone

from visrec.models import (
    EmbeddingStatus,
    ImageEmbedding,
    ModelKind,
    ModelVersion,
    PendingWork,
    PrivacyRelease,
    RunOutcome,
    TaskRun,
    WorkKind,
)
from visrec.services import health

from .factories import ProductFactory, ProductImageFactory
from .test_similar import make_version

pytestmark = pytest.mark.django_db
URL = "/admin/visrec/taskrun/health/"


@pytest.fixture
def broker_down():
    """The Celery app pointed at a port where nothing listens (as when Redis is down)."""
    saved = current_app.conf.broker_url
    current_app.conf.broker_url = "redis://127.0.0.1:1/0"
    yield
    current_app.conf.broker_url = saved


def count(html: str, name: str) -> str:
    match = re.search(rf'data-count="{name}">(?:<a [^>]*>)?([^<]*)<', html)
    assert match, name
    return match.group(1).strip()


def test_a_fresh_install_gets_a_page_that_says_what_has_not_happened_yet(admin_client):
    page = admin_client.get(URL)
    assert page.status_code == 200
    html = page.content.decode()
    assert "nothing served yet" in html
    assert html.count("never ran") >= 3  # the three nightly tasks
    report = health.health_report()
    assert [t.task for t in report.tasks if t.state == "never" and t.problem] == list(health.NIGHTLY_TASKS)
    index = next(t for t in report.tasks if t.task == "index_catalogue")
    assert index.state == "never" and not index.problem  # on demand: never running is no problem
    assert report.outbox.pending == 0 and report.outbox.oldest_age is None
    assert report.coverage.version is None
    assert report.budget.left == report.budget.total
    assert report.database["pgvector"]


def test_the_numbers_match_the_state(admin_client, settings):
    now = timezone.now()
    version = make_version("planted@1", 4)
    images = [ProductImageFactory(product=ProductFactory()) for _ in range(4)]
    PendingWork.objects.all().delete()  # what the image saves recorded: replaced by the rows below
    ImageEmbedding.objects.create(image=images[0], product=images[0].product, model_version=version.name,
                                  status=EmbeddingStatus.DONE, vector=[1, 0, 0, 0])
    ImageEmbedding.objects.create(image=images[1], product=images[1].product, model_version=version.name,
                                  status=EmbeddingStatus.FAILED, error="truncated")
    PendingWork.objects.create(kind=WorkKind.EMBED, image=images[2], created_at=now - dt.timedelta(seconds=30))
    PendingWork.objects.create(kind=WorkKind.EMBED, image=images[3], created_at=now - dt.timedelta(hours=2))
    PendingWork.objects.create(kind=WorkKind.EMBED, image=images[3], created_at=now - dt.timedelta(hours=1),
                               attempts=settings.VISREC.get("PENDING_WORK_MAX_ATTEMPTS", 8))
    PendingWork.objects.create(kind=WorkKind.REFRESH, product=images[0].product, created_at=now)
    TaskRun.objects.create(task="train_recommender", started_at=now - dt.timedelta(hours=3),
                           finished_at=now - dt.timedelta(hours=3), outcome=RunOutcome.FAILED,
                           summary="MemoryError: out of memory")
    TaskRun.objects.create(task="train_embedder", started_at=now - dt.timedelta(hours=7))  # still "running"
    TaskRun.objects.create(task="purge_expired_events", started_at=now - dt.timedelta(hours=30),
                           finished_at=now - dt.timedelta(hours=30), outcome=RunOutcome.DONE, summary="3 deleted")
    TaskRun.objects.create(task="index_catalogue", started_at=now - dt.timedelta(minutes=5),
                           finished_at=now - dt.timedelta(minutes=4), outcome=RunOutcome.SKIPPED,
                           summary="no images to index (missing)")
    PrivacyRelease.objects.create(kind="trending", period_start=health.budget_health().period_start, epsilon=2.5,
                                  mechanism="laplace", noise_scale=1, sensitivity=1, window_start=now,
                                  window_end=now)

    report = health.health_report(now)
    outbox = report.outbox
    assert (outbox.pending, outbox.embed, outbox.refresh, outbox.overdue, outbox.stuck) == (4, 3, 1, 2, 1)
    assert dt.timedelta(hours=2) <= outbox.oldest_age < dt.timedelta(hours=2, minutes=1)
    assert (report.coverage.version, report.coverage.images, report.coverage.done, report.coverage.failed,
            report.coverage.missing) == ("planted@1", 4, 1, 1, 2)
    states = {t.task: t for t in report.tasks}
    assert states["train_recommender"].state == "failed" and "MemoryError" in states["train_recommender"].problem
    assert states["train_embedder"].state == "killed" and "probably killed" in states["train_embedder"].problem
    assert states["purge_expired_events"].state == "stale" and "30 h ago" in states["purge_expired_events"].problem
    assert states["index_catalogue"].state == "nothing_done" and not states["index_catalogue"].problem
    assert report.budget.spent == 2.5 and report.budget.left == report.budget.total - 2.5
    assert report.served[0].version == version and report.served[0].verdict.startswith("Pretrained backbone")
    assert report.served[1].version is None
    problems = " | ".join(report.problems)
    for words in ("1 pending image job(s) were sent", "1 image(s) failed to embed under planted@1",
                  "2 image(s) have no vector", "MemoryError", "probably killed", "last succeeded 30 h ago"):
        assert words in problems

    html = admin_client.get(URL).content.decode()
    assert (count(html, "outbox-pending"), count(html, "outbox-overdue"), count(html, "outbox-stuck")) == ("4", "2", "1")
    assert (count(html, "coverage-done"), count(html, "coverage-failed"), count(html, "coverage-missing")) == (
        "1", "1", "2")
    assert 'href="/admin/visrec/imageembedding/?status__exact=failed&amp;model_version=planted%401"' in html
    assert "probably killed" in html and "MemoryError: out of memory" in html and "overdue" in html
    failed_list = admin_client.get("/admin/visrec/imageembedding/?status__exact=failed&model_version=planted%401")
    assert failed_list.status_code == 200 and "truncated" in failed_list.content.decode()


def test_a_run_that_is_just_running_is_not_a_problem():
    TaskRun.objects.create(task="train_recommender", started_at=timezone.now() - dt.timedelta(minutes=20))
    state = {t.task: t for t in health.task_health()}["train_recommender"]
    assert state.state == "running" and not state.problem


def test_a_fresh_success_after_a_failure_is_fine():
    now = timezone.now()
    TaskRun.objects.create(task="train_recommender", started_at=now - dt.timedelta(hours=25),
                           outcome=RunOutcome.FAILED, summary="boom")
    TaskRun.objects.create(task="train_recommender", started_at=now - dt.timedelta(hours=1),
                           finished_at=now - dt.timedelta(minutes=50), outcome=RunOutcome.DONE, summary="promoted")
    state = {t.task: t for t in health.task_health(now)}["train_recommender"]
    assert state.state == "ok" and state.last_success.summary == "promoted"


def test_queue_depths_are_read_from_the_broker(settings):
    names = {"DEFAULT_QUEUE": "visrec_health_test", "EXTRACTION_QUEUE": "visrec_health_test_x",
             "TRAINING_QUEUE": "visrec_health_test_t"}
    settings.VISREC = {**settings.VISREC, **names}
    with current_app.connection_for_write() as conn:
        for name in names.values():
            conn.default_channel.queue_purge(name)
        for _ in range(3):
            current_app.send_task("visrec.health_check", queue="visrec_health_test_x", connection=conn)
    try:
        broker = health.broker_health()
        assert broker.reachable and broker.transport == "redis"
        assert {q.name: q.messages for q in broker.queues} == {
            "visrec_health_test": 0, "visrec_health_test_x": 3, "visrec_health_test_t": 0}
    finally:
        with current_app.connection_for_write() as conn:
            conn.default_channel.queue_purge("visrec_health_test_x")


def test_a_broker_that_is_down_is_said_not_a_500(admin_client, broker_down):
    started = time.monotonic()
    page = admin_client.get(URL)
    assert time.monotonic() - started < 10
    assert page.status_code == 200
    html = page.content.decode()
    assert "The Celery broker could not be reached" in html
    assert re.search(r'data-queue="visrec">\?<', html)
    assert any("Celery broker did not answer" in p for p in health.health_report(broker_timeout=0.5).problems)


def test_staff_need_the_view_permission(client, django_user_model):
    assert client.get(URL).status_code == 302  # to the login page
    staff = django_user_model.objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(staff)
    assert client.get(URL).status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="view_taskrun"))
    page = client.get(URL)
    assert page.status_code == 200
    assert 'href="/admin/visrec/modelversion/"' not in page.content.decode()  # no link to what they cannot see


def test_the_runs_list_links_to_the_health_page_and_is_read_only(admin_client):
    TaskRun.objects.create(task="purge_expired_events", outcome=RunOutcome.DONE, summary="3 deleted",
                           finished_at=timezone.now())
    html = admin_client.get("/admin/visrec/taskrun/").content.decode()
    assert f'href="{URL}"' in html and "3 deleted" in html
    assert admin_client.get("/admin/visrec/taskrun/add/").status_code == 403
    assert f'href="{URL}"' in admin_client.get("/admin/visrec/modelversion/").content.decode()
    assert 'href="/admin/visrec/taskrun/"' in admin_client.get("/admin/").content.decode()  # from the index


def test_the_database_health_of_the_worker_task_still_answers():
    ModelVersion.objects.create(kind=ModelKind.EMBEDDER, name="x@1")
    assert set(health.database_health()) == {"pgvector", "image_embeddings", "product_embeddings"}


def test_a_running_experiment_is_on_the_health_page(admin_client, settings):
    from visrec.services.experiments import assignment

    from .factories import ProductFactory
    from .test_experiments import recommender
    from .test_similar import make_version

    make_version()
    products = [ProductFactory() for _ in range(3)]
    experiment = assignment.start(name="bigger photos", version_a=recommender("rec-a", products, 3),
                                  b_is_shop_list=True)
    page = admin_client.get("/admin/visrec/taskrun/health/").content.decode()
    assert "A/B test “bigger photos” is running" in page and "arm B the shop's own list" in page
    assert f"/admin/visrec/experiment/{experiment.pk}/report/" in page
    assignment.end(experiment)
    assert "is running since" not in admin_client.get("/admin/visrec/taskrun/health/").content.decode()
