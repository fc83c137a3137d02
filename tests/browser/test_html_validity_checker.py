"""The HTML validity check of the browser tests can fail: it sees what it must."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


def test_the_check_finds_duplicate_ids_and_a_label_for_nothing(html_checker):
    errors = html_checker.errors(
        b'<!doctype html><html lang="da"><head><title>x</title></head><body><main>'
        b'<form><input type="hidden" name="csrf_token" id="csrf_token" value="1"></form>'
        b'<form><input type="hidden" name="csrf_token" id="csrf_token" value="1"></form>'
        b'<label for="nowhere">Navn</label></main></body></html>'
    )
    assert any("Duplicate ID" in e and "csrf_token" in e for e in errors), errors
    assert any("label" in e and "for" in e for e in errors), errors


def test_a_valid_page_has_no_errors(html_checker):
    assert (
        html_checker.errors(
            b'<!doctype html><html lang="da"><head><title>x</title></head><body><main>'
            b'<label for="navn">Navn</label><input id="navn" name="navn"></main></body></html>'
        )
        == []
    )
