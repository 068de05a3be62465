"""Fuzz every operation of the egress OpenAPI description: no input may cause a server error."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from egress.web.app import create_app
from hub.web.sso import current_identity
from tests.fixtures_egress import ADMIN, AUTHOR, CHECKER1, injected_identity

pytestmark = pytest.mark.slow
EXAMPLES_PER_OPERATION = 15


def test_no_server_errors(eg):
    eg.submitted()  # request 1 with file 1 exists, so some generated ids hit real objects
    app = create_app(eg.settings, prefix="/services/egress/", sso=False)
    app.dependency_overrides[current_identity] = injected_identity
    schema = schemathesis.openapi.from_asgi("/services/egress/api/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    calls = []

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case):
            for user in (AUTHOR, CHECKER1, ADMIN):
                response = case.call(headers={"X-Test-User": user, "X-Test-Via": "token"})
                calls.append(response.status_code)
                assert response.status_code < 500, (
                    user,
                    case.method,
                    case.formatted_path,
                    response.text[:300],
                )

        fuzz()
    print(f"{len(calls)} calls over {len(operations)} operations, no server errors")
