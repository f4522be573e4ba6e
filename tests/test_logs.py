"""pushwire.logs: the JSON line format and what the access log shows of a query."""

from __future__ import annotations

import json
import logging

import pytest

from pushwire.logs import FIELDS, JsonFormatter, masked_query, setup


def test_a_json_line_has_the_record_and_its_fields() -> None:
    record = logging.LogRecord(
        "pushwire.connection", logging.INFO, __file__, 1, "connection %s", ("open",), None
    )
    setattr(record, FIELDS, {"event": "open", "transport": "sse", "user": None})
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "info"
    assert line["logger"] == "pushwire.connection"
    assert line["message"] == "connection open"
    assert line["event"] == "open" and line["transport"] == "sse" and line["user"] is None
    assert line["time"].endswith("Z")


def test_the_access_log_shows_parameter_names_never_values() -> None:
    query = "hello=%7B%22token%22%3A%22eyJ.x.y%22%7D&cursor=5&token=abc"
    assert masked_query(query) == "hello=***&cursor=***&token=***"
    assert masked_query("") == ""


def test_an_unknown_level_or_format_is_refused() -> None:
    with pytest.raises(ValueError, match="log level is one of"):
        setup("verbose", "text")
    with pytest.raises(ValueError, match="log format is one of"):
        setup("info", "xml")
