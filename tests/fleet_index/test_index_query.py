"""Fleet indexing's query syntax: what AWS accepts is translated, what AWS refuses is refused with the reason."""

from __future__ import annotations

import sqlite3

import pytest

from fleetdesk.sandbox.index_query import QueryError, parse, query_sql
from fleetdesk.sandbox.index_store import SCHEMA, _row


@pytest.fixture
def db():
    """A tiny index: the translator's SQL run against the real schema."""
    con = sqlite3.connect(":memory:")
    con.executescript(SCHEMA)
    things = {
        "tv-plasma": {"thingName": "tv-plasma", "attributes.size": "55", "thingTypeName": "tv"},
        "tv-oled": {"thingName": "tv-oled", "attributes.size": "65", "thingTypeName": "tv"},
        "abc": {"thingName": "abc", "attributes.size": "75", "shadow.reported.temp": 21.5},
        "abd": {"thingName": "abd", "attributes.serial": "abce", "shadow.reported.temp": 30},
    }
    for name, fields in things.items():
        con.execute("INSERT INTO things VALUES (?, '{}')", (name,))
        con.executemany("INSERT INTO fields VALUES (?,?,?,?,?)", [_row(name, f, v) for f, v in fields.items()])
    con.execute("INSERT INTO fields VALUES (?,?,?,?,?)", _row("abc", "thingGroupNames", "Lab"))

    def search(q: str) -> list[str]:
        where, args = query_sql(q)
        return [r[0] for r in con.execute(f"SELECT name FROM things WHERE {where} ORDER BY name", args)]
    return search


@pytest.mark.parametrize("query, expected", [
    ("*", ["abc", "abd", "tv-oled", "tv-plasma"]),
    ("thingName:abc", ["abc"]),
    ("thingName:ABC", ["abc"]),                       # search is case-insensitive
    ("thingName:ab?", ["abc", "abd"]),
    ("thingName:tv*", ["tv-oled", "tv-plasma"]),
    ("thingName:(tv* AND -tv-plasma)", ["tv-oled"]),  # field grouping and hyphen exclusion
    ("thingName:tv* NOT thingName:tv-oled", ["tv-plasma"]),
    ("thingName:abc OR thingName:abd", ["abc", "abd"]),
    ("thingTypeName:tv attributes.size:55", ["tv-plasma"]),  # default operator AND
    ("attributes.size:[55 TO 65]", ["tv-oled", "tv-plasma"]),
    ("attributes.size:{55 TO 75]", ["abc", "tv-oled"]),
    ("attributes.size:[70 TO *]", ["abc"]),
    ("shadow.reported.temp:[20 TO 25}", ["abc"]),
    ('attributes.serial:["abcd" TO "abcf"]', ["abd"]),
    ("shadow.reported.temp:*", ["abc", "abd"]),
    ("thingGroupNames:lab", ["abc"]),
    ("abce", ["abd"]),                                # no field: every field
    ("(thingName:abc OR thingName:tv*) AND NOT thingTypeName:tv", ["abc"]),
    ("thingName:\\*", []),                            # an escaped wildcard is a literal
])
def test_accepted_queries_match_what_aws_would(db, query, expected):
    assert db(query) == expected


@pytest.mark.parametrize("query, reason", [
    ("", "empty"),
    ("thingName:(abc", "expected ')'"),
    ("thingName:abc AND", "missing"),
    ("OR thingName:abc", "both sides"),
    ("thingName:a@b", "'@' is not supported"),
    ("thingName:a;b", "';' is not supported"),
    ("thingName:*bc OR thingGroupNames:*ab", "one query term only"),
    (" ".join(f"a{i}" for i in range(13)), "at most 12"),
    ("attributes.size:[1 2]", "[low TO high]"),
    ('thingName:"abc', "unterminated"),
])
def test_queries_aws_refuses_are_refused_with_the_reason(query, reason):
    with pytest.raises(QueryError, match=None) as err:
        parse(query)
    assert reason in str(err.value)


def test_a_leading_wildcard_query_is_limited_to_100_characters():
    parse("thingName:*bc")
    with pytest.raises(QueryError, match="100 characters"):
        parse("thingName:*bc AND " + " AND ".join(["attributes.x:" + "y" * 20] * 4))
