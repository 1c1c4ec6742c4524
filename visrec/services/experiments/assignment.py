"""Which arm of the running experiment a shopper is in: a keyed hash, nothing stored.

A shopper's arm is ``HMAC-SHA256(salt, pseudonym)`` read as a number in [0, 1): below
``share_b`` is arm B. The same shopper gets the same arm on every request, in every process,
for the whole experiment, and a new experiment (new salt) splits shoppers afresh, so one
test's arms do not carry over into the next. Events of assigned shoppers are stamped with
the experiment and arm when they are stored (:func:`stamp`): attribution needs no cookie and
no client-side value a script could forge.
"""
from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext as _

from ...models import (
    Experiment,
    ExperimentArm,
    InteractionEvent,
    ModelKind,
    ModelVersion,
)
from ..serving.switching import published, unpublished_message

#: How long a process trusts its memo of the running experiment (starting and ending one in
#: this process forgets it at once; other processes follow within this many seconds).
MEMO_SECONDS = 5.0
_memo: dict[str, tuple[float, Experiment | None]] = {}


def running_experiment(surface: str = "for_you") -> Experiment | None:
    """The experiment running on ``surface``, memoised for :data:`MEMO_SECONDS`."""
    now = time.monotonic()
    memo = _memo.get(surface)
    if memo is not None and now - memo[0] < MEMO_SECONDS:
        return memo[1]
    found = current_experiment(surface)
    _memo[surface] = (now, found)
    return found


def current_experiment(surface: str = "for_you") -> Experiment | None:
    """The experiment running on ``surface``, read now (one query, no memo)."""
    return (Experiment.objects.select_related("version_a", "version_b")
            .filter(surface=surface, ended_at__isnull=True).first())


def forget(*args, **kwargs) -> None:
    """Drops this process's memo; connected to saving and deleting an experiment."""
    _memo.clear()


def arm_for(experiment: Experiment, subject: str) -> str:
    """``"a"`` or ``"b"``: the shopper's arm, the same for every call with these arguments."""
    digest = hmac.new(experiment.salt.encode(), subject.encode(), hashlib.sha256).digest()
    position = int.from_bytes(digest[:8], "big") / 2 ** 64
    return ExperimentArm.B if position < experiment.share_b else ExperimentArm.A


def assignment(subject: str | None) -> tuple[Experiment, str] | None:
    """The running experiment and the shopper's arm, or ``None`` (no experiment, no shopper)."""
    if not subject:
        return None
    experiment = running_experiment()
    if experiment is None:
        return None
    return experiment, arm_for(experiment, subject)


def version_of(experiment: Experiment, arm: str) -> ModelVersion | None:
    """The recommender version the arm serves; ``None`` for the shop's own list."""
    if arm == ExperimentArm.B:
        return None if experiment.b_is_shop_list else experiment.version_b
    return experiment.version_a


def stamp(subject: str, rows: Iterable[InteractionEvent]) -> None:
    """Marks events of an assigned shopper with the running experiment and their arm."""
    assigned = assignment(subject)
    if assigned is None:
        return
    experiment, arm = assigned
    for row in rows:
        row.experiment_id, row.arm = experiment.pk, arm


def validate(experiment: Experiment) -> None:
    """Raises ``ValidationError`` (by field) unless the experiment can run as configured."""
    from ...conf import visrec_settings

    errors: dict[str, str] = {}
    for field in ("version_a", "version_b"):
        version = getattr(experiment, field, None) if getattr(experiment, f"{field}_id") else None
        if version is not None and (version.kind != ModelKind.RECOMMENDER or not published(version)):
            errors[field] = unpublished_message(version)
    if experiment.b_is_shop_list == bool(experiment.version_b_id):
        errors["version_b"] = _("arm B serves either a recommender version or the shop's own list, not both")
    elif experiment.b_is_shop_list and not visrec_settings.SHOP_LIST:
        errors["b_is_shop_list"] = _('the shop\'s own list needs VISREC["SHOP_LIST"] (a callable)')
    if experiment.version_a_id and experiment.version_a_id == experiment.version_b_id:
        errors["version_b"] = _("both arms serve the same version: nothing to compare")
    if not 0.01 <= experiment.share_b <= 0.99:
        errors["share_b"] = _("between 0.01 and 0.99")
    running = Experiment.objects.filter(surface=experiment.surface, ended_at__isnull=True).exclude(pk=experiment.pk)
    if experiment.ended_at is None and running.exists():
        errors["name"] = _("%s is running: end it first (one experiment at a time)") % running.first().name
    if errors:
        raise ValidationError(errors)


def start(**fields) -> Experiment:
    """Creates and starts an experiment after :func:`validate`."""
    experiment = Experiment(**fields)
    validate(experiment)
    experiment.save()
    return experiment


def end(experiment: Experiment) -> Experiment:
    """Ends a running experiment: from now on shoppers get the served version again."""
    if experiment.ended_at is None:
        experiment.ended_at = timezone.now()
        experiment.save(update_fields=["ended_at"])
    return experiment
