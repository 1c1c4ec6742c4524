"""The published OpenAPI schema against the server: schemathesis generates requests from it
(valid and invalid), and every answer must be documented, of the documented shape, never a 5xx."""
from __future__ import annotations

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings

schema = schemathesis.openapi.from_wsgi("/api/visrec/schema/?format=json", get_wsgi_application())


@pytest.fixture
def served(settings):
    """A served embedder with a few products, and throttles off (429 would hide the rest)."""
    from .factories import ProductFactory
    from .test_similar import make_version, plant

    settings.VISREC = {**settings.VISREC, "THROTTLE_RATES": {}, "EVENTS_PER_NETWORK_PER_MINUTE": 0}
    make_version()
    products = [ProductFactory(price=f"{10 + i}.00") for i in range(5)]
    plant(products, [[1.0, 0.2 * i] + [0.0] * 14 for i in range(5)])
    # As Django's test client does: requests must not close the test's connection (its transaction).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield products
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.mark.django_db
@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_the_server_does_what_its_schema_says(case, served):
    """Every default check but "schema-valid data is accepted": rules a schema cannot state
    (a product that exists, a timestamp within the last 7 days, a file that is an image) are
    400s with their reason, documented per operation."""
    case.call_and_validate(excluded_checks=[schemathesis.checks.positive_data_acceptance])
