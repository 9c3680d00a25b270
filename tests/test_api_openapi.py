"""``schemas/openapi.yaml``: a valid OpenAPI 3.1 document that describes exactly the routes
``ctilink.screenpop.api`` serves. (Every API test also checks each real response against it:
``tests.test_api_support.request``.)"""

from __future__ import annotations

import re

import pytest
from openapi_spec_validator import validate
from openapi_spec_validator.readers import read_from_filename

from ctilink.screenpop.api import CALL_COMMANDS, JOIN_COMMANDS, ROUTES, STATUS_BY_CODE
from ctilink.screenpop.api_input import DIALABLE, NAME, TEXT, VARIABLE
from ctilink.screenpop.callbacks import Status
from tests.test_api_support import (
    OPENAPI,
    Reply,
    check_against_openapi,
    openapi,
    openapi_operations,
)

API_CODES = {
    "unauthorized", "token_expired", "forbidden", "method_not_allowed", "conflict", "too_large",
    "unsupported_media_type", "too_many", "internal",
}  # fmt: skip


def test_the_file_is_valid_openapi_3_1() -> None:
    document, url = read_from_filename(str(OPENAPI))
    assert document["openapi"].startswith("3.1")
    validate(document, base_uri=url)


def test_every_route_is_described_and_nothing_else() -> None:
    served = {(route.method, route.path) for route in ROUTES}
    assert served == openapi_operations()


def test_every_operation_documents_auth_and_its_errors() -> None:
    for path, item in openapi()["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert {"401", "500"} <= set(responses), (method, path)
            if method in ("post", "delete"):
                assert "403" in responses and "404" in responses, (method, path)
            if "requestBody" in operation:
                assert {"400", "413", "415"} <= set(responses), (method, path)
            assert operation["description"] and operation["summary"], (method, path)


def test_error_codes_and_enums_match_the_code() -> None:
    schemas = openapi()["components"]["schemas"]
    assert set(schemas["Error"]["properties"]["error"]["enum"]) == set(STATUS_BY_CODE) | API_CODES
    commands = set(schemas["CommandResult"]["properties"]["command"]["enum"])
    assert commands == set(CALL_COMMANDS) | {"clear"} | set(JOIN_COMMANDS)
    assert schemas["Callback"]["properties"]["status"]["enum"] == [s.value for s in Status]


@pytest.mark.parametrize(
    ("schema", "pattern"),
    [("Name", NAME), ("Number", DIALABLE)],
)
def test_patterns_match_the_code(schema: str, pattern: re.Pattern[str]) -> None:
    assert openapi()["components"]["schemas"][schema]["pattern"] == pattern.pattern


def test_call_data_and_text_patterns_match_the_code() -> None:
    data = openapi()["components"]["schemas"]["CallData"]
    assert data["propertyNames"]["pattern"] == VARIABLE.pattern
    assert data["additionalProperties"]["pattern"] == TEXT.pattern


def test_the_response_checker_catches_what_the_file_does_not_say() -> None:
    good = Reply(200, {"content-type": "application/json"}, {"call_id": "c1", "switch": "pbx"})
    check_against_openapi("POST", "/calls", good)
    with pytest.raises(AssertionError, match="does not match the OpenAPI"):
        check_against_openapi("POST", "/calls", Reply(200, good.headers, {"call_id": "c1"}))
    with pytest.raises(AssertionError, match="answered 409, not documented"):
        check_against_openapi("POST", "/calls", Reply(409, good.headers, {"error": "conflict"}))
    bad_error = {"error": "oops", "message": "x"}
    with pytest.raises(AssertionError, match="does not match"):
        check_against_openapi("POST", "/calls", Reply(400, good.headers, bad_error))
