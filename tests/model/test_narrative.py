"""Narrative rules: the div is an XHTML <div> without active content."""
import pytest

from app.errors import InvalidResource
from app.model.validation import validate_resource


def test_a_narrative_that_is_not_an_xhtml_div_is_rejected():
    with pytest.raises(InvalidResource) as raised:
        validate_resource({"resourceType": "Patient", "text": {"status": "generated", "div": "plain text"}})
    assert raised.value.issues[0].expression == ("Patient.text.div",)


def test_a_narrative_with_a_script_or_event_handler_is_rejected():
    for div in ("<div><script>alert(1)</script></div>", '<div><img src="x" onerror="alert(1)"/></div>'):
        with pytest.raises(InvalidResource):
            validate_resource({"resourceType": "Patient", "text": {"status": "generated", "div": div}})


def test_an_ordinary_narrative_is_accepted():
    div = '<div xmlns="http://www.w3.org/1999/xhtml"><p>Seen on 2024-05-01; based on x = y</p></div>'
    validate_resource({"resourceType": "Patient", "text": {"status": "generated", "div": div}})
