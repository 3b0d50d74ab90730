"""CSV rows for bulk registration: columns are device fields, problems named by line."""

from __future__ import annotations

import pytest

from gateway.api.bulk import parse_csv
from gateway.errors import ConfigError


def test_rows_become_documents_with_labels_and_blank_cells_left_out() -> None:
    text = (
        "\ufeffid, profile, host, port, unit, labels\n"
        "press-1,press,10.0.0.21,502,1,line=2;cell=a\n"
        "\n"
        'press-2,press,"10.0.0.22",,3,\n'
    )
    rows, problems = parse_csv(text.removeprefix("\ufeff"))
    assert problems == []
    assert rows == [
        (
            "line 2",
            {
                "id": "press-1",
                "profile": "press",
                "host": "10.0.0.21",
                "port": "502",
                "unit": "1",
                "labels": {"line": "2", "cell": "a"},
            },
        ),
        ("line 4", {"id": "press-2", "profile": "press", "host": "10.0.0.22", "unit": "3"}),
    ]


def test_bad_rows_are_named_by_line_and_the_good_ones_kept_for_checking() -> None:
    rows, problems = parse_csv("id,labels\na,line=1\nb,oops\nc,x=1,extra\n")
    assert [where for where, _ in rows] == ["line 2"]
    assert [(p.path, p.message) for p in problems] == [
        ("line 3.labels", "'oops': expected key=value, pairs separated by ';'"),
        ("line 4", "more cells than the 2 columns"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty: a header row"),
        ("host,port\nh,1\n", "no 'id' column"),
        ("id,id\na,b\n", "duplicate column 'id'"),
        ("id\n", "no device rows"),
    ],
)
def test_a_file_without_an_id_column_or_rows_is_refused_whole(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_csv(text)
