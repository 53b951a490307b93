"""The OData subset (webapp.crm.odata) against real SQL, on SQLite and on PostgreSQL.

Every expected result below is written by hand from the fixture rows, so the tests pin the
semantics of PROTOCOL.md §2 that the device's JavaScript engine mirrors.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, MetaData, Table, create_engine, insert, select, text
from sqlalchemy.pool import NullPool

from webapp.crm.entities import SYSTEM_ENTITIES
from webapp.crm.metadata import Entity, entity_from_dict
from webapp.crm.odata import (
    And,
    Call,
    Compare,
    Expand,
    Literal,
    Not,
    ODataError,
    Or,
    filter_condition,
    order_clauses,
    parse_expand,
    parse_filter,
    parse_orderby,
    parse_select,
    parse_top,
    resolve_field,
)
from webapp.crm.tables import SYSTEM_TABLES, build_entity_table
from webapp.db import connect, metadata

PG_URL = os.environ.get("OUTPOST_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

ENTITIES: dict[str, Entity] = {e.logical_name: e for e in SYSTEM_ENTITIES}
ACCOUNT = ENTITIES["account"]
CONTACT = ENTITIES["contact"]

# A custom entity for the types account lacks (boolean, decimal).
PROBE = entity_from_dict(
    {
        "logical_name": "new_probe",
        "display_name": "Probe",
        "primary_name": "new_name",
        "attributes": [
            {"logical_name": "new_name", "type": "string", "required": True},
            {"logical_name": "new_flag", "type": "boolean"},
            {"logical_name": "new_ratio", "type": "decimal"},
        ],
    },
    set(ENTITIES),
)
VISIT = entity_from_dict(
    {
        "logical_name": "new_visit",
        "primary_name": "new_subject",
        "attributes": [
            {"logical_name": "new_subject", "type": "string"},
            {"logical_name": "new_probeid", "type": "lookup", "targets": ["new_probe"]},
        ],
    },
    {*ENTITIES, "new_probe"},
)
PROBE_METADATA = MetaData()
PROBE_TABLE = build_entity_table(PROBE, PROBE_METADATA, "new_probe")

ORG = "11111111-1111-4111-8111-111111111111"
OTHER_ORG = "22222222-2222-4222-8222-222222222222"
BU = "33333333-3333-4333-8333-333333333333"
U1 = "b1000000-0000-4000-8000-000000000001"
U2 = "b1000000-0000-4000-8000-000000000002"


def a(n: int) -> str:
    """The id of fixture account n (ids sort in n order)."""
    return f"a0000000-0000-4000-8000-{n:012d}"


def c(n: int) -> str:
    """The id of fixture contact n."""
    return f"c0000000-0000-4000-8000-{n:012d}"


def p(n: int) -> str:
    """The id of fixture probe n."""
    return f"d0000000-0000-4000-8000-{n:012d}"


def t(day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0) -> dt.datetime:
    """A naive UTC moment in November 2026."""
    return dt.datetime(2026, 11, day, hour, minute, second, micro)


# name, accountnumber, city, revenue, employees, industry, primary contact, parent, description,
# statecode, owner, createdon, versionnumber, email  (row n has id a(n))
ACCOUNT_ROWS: list[tuple[Any, ...]] = [
    (
        "Ångström",
        "A-100",
        "Malmö",
        "1500000.50",
        120,
        6,
        c(1),
        None,
        "Precision optics",
        0,
        U1,
        t(27, 8),
        11,
        "info@angstrom.se",
    ),
    (
        "apple",
        "a-200",
        "Cupertino",
        "5000",
        10,
        8,
        None,
        a(3),
        "Back\\slash and 50% off",
        1,
        U2,
        t(28, 9, 30, 0, 250000),
        12,
        None,
    ),
    (
        "Apple",
        "A-200",
        "Cupertino",
        "5000",
        10,
        8,
        c(2),
        None,
        "Fruit, 100% organic",
        0,
        U1,
        t(28, 9, 30),
        13,
        "hello@apple.example",
    ),
    ("ZEBRA", None, "Berlin", None, 0, None, None, a(3), None, 1, U2, t(28, 23, 59, 59, 500000), 14, None),
    ("émile", "E_1", "paris", "250.25", None, 4, c(1), a(1), "under_score", 0, U1, t(29), 15, "Emile@Example.fr"),
    ("O'Brien & Co", "OB%1", None, "-100", 3, 1, c(3), None, "Irish", 0, U2, t(26, 12), 16, None),
    ("Éclair", "EC1", "PARIS", "0", 45, 4, None, a(1), None, 0, U1, t(28), 17, "ECLAIR@example.fr"),
    (
        "Zürich Re",
        "ZR-9",
        "Zürich",
        "99999999.99",
        2500,
        5,
        None,
        None,
        "Re-insurance",
        1,
        U1,
        t(30, 10),
        18,
        "contact@zurich.example",
    ),
    ("banana", None, "berlin", "5000", None, 2, c(2), a(3), "", 0, None, t(28, 9, 30), 19, None),
    ("100% Pure", "100%", None, None, 7, None, None, None, "pure_100", 0, U2, t(27, 8), 20, "pure@example.com"),
]
# fullname, birthdate, parentcustomerid, parentcustomerid__type (row n has id c(n))
CONTACT_ROWS: list[tuple[Any, ...]] = [
    ("Anna Berg", dt.date(1990, 5, 17), a(1), "account"),
    ("Björn Åkesson", None, c(1), "contact"),
    ("Carla Díaz", dt.date(1985, 12, 31), a(3), "account"),
    ("dan", dt.date(2000, 1, 1), None, None),
]
# new_name, new_flag, new_ratio (row n has id p(n))
PROBE_ROWS: list[tuple[Any, ...]] = [
    ("one", True, Decimal("0.5")),
    ("two", False, Decimal("1.25")),
    ("three", None, None),
    ("four", True, Decimal("-2.125")),
]

BY_ID = ["Ångström", "apple", "Apple", "ZEBRA", "émile", "O'Brien & Co", "Éclair", "Zürich Re", "banana", "100% Pure"]
BY_NAME = ["100% Pure", "apple", "Apple", "banana", "O'Brien & Co", "ZEBRA", "Zürich Re", "Ångström", "Éclair", "émile"]
BY_NAME_DESC = [
    "émile",
    "Éclair",
    "Ångström",
    "Zürich Re",
    "ZEBRA",
    "O'Brien & Co",
    "banana",
    "apple",
    "Apple",
    "100% Pure",
]


def _system_columns(n: int, created: dt.datetime, owner: str | None, version: int) -> dict[str, Any]:
    return {
        "ownerid": owner,
        "ownerid__type": "systemuser" if owner else None,
        "owningbusinessunit": BU,
        "createdon": created,
        "modifiedon": created + dt.timedelta(hours=n),
        "createdby": U1,
        "modifiedby": U1,
        "versionnumber": version,
    }


def _account_records() -> list[dict[str, Any]]:
    records = []
    columns = (
        "name", "accountnumber", "address1_city", "revenue", "numberofemployees", "industrycode",
        "primarycontactid", "parentaccountid", "description", "statecode", "ownerid", "createdon",
        "versionnumber", "emailaddress1",
    )  # fmt: skip
    for n, row in enumerate(ACCOUNT_ROWS, start=1):
        values = dict(zip(columns, row, strict=True))
        owner, created, version = values.pop("ownerid"), values.pop("createdon"), values.pop("versionnumber")
        if values["revenue"] is not None:
            values["revenue"] = Decimal(values["revenue"])
        records.append(
            {
                "organizationid": ORG,
                "accountid": a(n),
                **values,
                "statuscode": values["statecode"] + 1,
                **_system_columns(n, created, owner, version),
            }
        )
    # Same name, another organisation: must never show up once the caller adds its org condition.
    records.append({**records[1], "organizationid": OTHER_ORG, "accountid": a(99), "name": "apple"})
    return records


def _seed(engine: Engine) -> None:
    account, contact = SYSTEM_TABLES["account"], SYSTEM_TABLES["contact"]
    metadata.create_all(engine, tables=[account, contact])
    PROBE_METADATA.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(account), _account_records())
        conn.execute(
            insert(contact),
            [
                {
                    "organizationid": ORG,
                    "contactid": c(n),
                    "fullname": fullname,
                    "lastname": fullname.split()[-1],
                    "birthdate": birthdate,
                    "parentcustomerid": parent,
                    "parentcustomerid__type": parent_type,
                    **_system_columns(n, t(1), U1, 100 + n),
                }
                for n, (fullname, birthdate, parent, parent_type) in enumerate(CONTACT_ROWS, start=1)
            ],
        )
        conn.execute(
            insert(PROBE_TABLE),
            [
                {
                    "organizationid": ORG,
                    "new_probeid": p(n),
                    "new_name": name,
                    "new_flag": flag,
                    "new_ratio": ratio,
                    **_system_columns(n, t(2), U1, 200 + n),
                }
                for n, (name, flag, ratio) in enumerate(PROBE_ROWS, start=1)
            ],
        )


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """An engine on a database holding the fixture rows: SQLite, then PostgreSQL (own schema)."""
    if request.param == "sqlite":
        database = connect(f"sqlite:///{tmp_path_factory.mktemp('odata')}/t.db")
        _seed(database.write_engine)
        yield database.read_engine
        database.dispose()
        return
    schema = f"t_{uuid.uuid4().hex}"
    admin = create_engine(PG_URL, poolclass=NullPool, connect_args={"connect_timeout": 5})
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # any failure to reach the server means: no PostgreSQL here
        admin.dispose()
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {exc}")
    engine = create_engine(PG_URL, poolclass=NullPool, connect_args={"options": f"-csearch_path={schema}"})
    try:
        _seed(engine)
        _use_locale_collation(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _use_locale_collation(engine: Engine) -> None:
    """Give PostgreSQL's string columns a locale collation where ICU is there.

    Under a locale collation 'Ångström' sorts next to 'apple', so the code-point rule is only
    really tested when the columns do not already compare by code point.
    """
    columns = {
        "account": ["name", "address1_city", "description", "accountnumber", "primarycontactid", "ownerid"],
        "contact": ["fullname"],
    }
    with engine.begin() as conn:
        if not conn.scalar(text("SELECT count(*) FROM pg_collation WHERE collname = 'und-x-icu'")):
            return
        for table, names in columns.items():
            for name in names:
                conn.execute(text(f'ALTER TABLE {table} ALTER COLUMN {name} TYPE varchar COLLATE "und-x-icu"'))


def query(engine: Engine, entity: Entity, table: Table, filter_: str, orderby: str) -> list[str]:
    """The primary names of the fixture org's rows matching `filter_`, in `orderby` order."""
    conditions = [table.c.organizationid == ORG]
    if filter_:
        conditions.append(filter_condition(parse_filter(filter_), entity, table))
    order = order_clauses(parse_orderby(orderby, entity), entity, table)
    stmt = select(table.c[entity.primary_name]).where(*conditions).order_by(*order)
    with engine.connect() as conn:
        return list(conn.scalars(stmt))


# --- result tables ---------------------------------------------------------------------------

ACCOUNT_CASES: list[tuple[str, str, list[str]]] = [
    # string equality: case-insensitive by Unicode lower-casing, accents matter
    ("name eq 'apple'", "", ["apple", "Apple"]),
    ("name eq 'APPLE'", "", ["apple", "Apple"]),
    ("name eq 'ÅNGSTRÖM'", "", ["Ångström"]),
    ("name eq 'ÉMILE'", "", ["émile"]),
    ("name eq 'emile'", "", []),
    ("name eq 'O''Brien & co'", "", ["O'Brien & Co"]),
    ("emailaddress1 eq 'emile@example.fr'", "", ["émile"]),
    ("address1_city eq 'BERLIN'", "", ["ZEBRA", "banana"]),
    ("address1_city eq 'zürich'", "", ["Zürich Re"]),
    (
        "name ne 'apple'",
        "",
        ["Ångström", "ZEBRA", "émile", "O'Brien & Co", "Éclair", "Zürich Re", "banana", "100% Pure"],
    ),
    # ne never matches a null value; not (eq) does
    ("accountnumber ne 'a-200'", "", ["Ångström", "émile", "O'Brien & Co", "Éclair", "Zürich Re", "100% Pure"]),
    (
        "not (accountnumber eq 'a-200')",
        "",
        ["Ångström", "ZEBRA", "émile", "O'Brien & Co", "Éclair", "Zürich Re", "banana", "100% Pure"],
    ),
    # string ordering comparisons: lower-cased, by code point (å and é sort after z)
    ("name gt 'zebra'", "name", ["Zürich Re", "Ångström", "Éclair", "émile"]),
    ("name ge 'ZEBRA'", "name", ["ZEBRA", "Zürich Re", "Ångström", "Éclair", "émile"]),
    ("name lt 'B'", "name", ["100% Pure", "apple", "Apple"]),
    ("name le 'banana'", "name desc", ["banana", "apple", "Apple", "100% Pure"]),
    ("name gt 'é'", "name", ["Éclair", "émile"]),
    # contains / startswith / endswith, with %, _ and \ taken literally
    ("contains(name,'PP')", "", ["apple", "Apple"]),
    ("startswith(name,'é')", "", ["émile", "Éclair"]),
    ("endswith(name,'RE')", "", ["Zürich Re", "100% Pure"]),
    ("contains(name,'%')", "", ["100% Pure"]),
    ("contains(accountnumber,'_')", "", ["émile"]),
    ("contains(description,'\\')", "", ["apple"]),
    ("contains(description,'50%')", "", ["apple"]),
    ("startswith(accountnumber,'100%')", "", ["100% Pure"]),
    ("endswith(description,'_score')", "", ["émile"]),
    ("startswith(description,'PURE_')", "", ["100% Pure"]),
    (
        "contains(description,'')",
        "",
        ["Ångström", "apple", "Apple", "émile", "O'Brien & Co", "Zürich Re", "banana", "100% Pure"],
    ),
    ("not contains(name,'a')", "", ["Ångström", "émile", "O'Brien & Co", "Zürich Re", "100% Pure"]),
    (
        "not contains(address1_city,'paris')",
        "",
        ["Ångström", "apple", "Apple", "ZEBRA", "O'Brien & Co", "Zürich Re", "banana", "100% Pure"],
    ),
    # null
    ("address1_city eq null", "", ["O'Brien & Co", "100% Pure"]),
    ("address1_city ne null", "", ["Ångström", "apple", "Apple", "ZEBRA", "émile", "Éclair", "Zürich Re", "banana"]),
    ("revenue eq null", "", ["ZEBRA", "100% Pure"]),
    ("not (revenue gt 1000)", "", ["ZEBRA", "émile", "O'Brien & Co", "Éclair", "100% Pure"]),
    ("revenue le 1000", "", ["émile", "O'Brien & Co", "Éclair"]),
    # numbers: integers, decimals, negatives, against money, integer, option set, versionnumber
    ("revenue eq 5000", "", ["apple", "Apple", "banana"]),
    ("revenue eq 5000.00", "", ["apple", "Apple", "banana"]),
    ("revenue gt 250.25", "", ["Ångström", "apple", "Apple", "Zürich Re", "banana"]),
    ("revenue ge 250.25", "", ["Ångström", "apple", "Apple", "émile", "Zürich Re", "banana"]),
    ("revenue lt 0", "", ["O'Brien & Co"]),
    ("revenue eq -100", "", ["O'Brien & Co"]),
    ("revenue ge -100.5 and revenue lt 1", "", ["O'Brien & Co", "Éclair"]),
    ("numberofemployees eq 0", "", ["ZEBRA"]),
    (
        "numberofemployees gt 2.5",
        "",
        ["Ångström", "apple", "Apple", "O'Brien & Co", "Éclair", "Zürich Re", "100% Pure"],
    ),
    ("numberofemployees lt 10", "", ["ZEBRA", "O'Brien & Co", "100% Pure"]),
    ("numberofemployees ne 10", "", ["Ångström", "ZEBRA", "O'Brien & Co", "Éclair", "Zürich Re", "100% Pure"]),
    ("numberofemployees le 10.0", "", ["apple", "Apple", "ZEBRA", "O'Brien & Co", "100% Pure"]),
    ("industrycode eq 8", "", ["apple", "Apple"]),
    ("industrycode ne 8", "", ["Ångström", "émile", "O'Brien & Co", "Éclair", "Zürich Re", "banana"]),
    ("statecode eq 1", "", ["apple", "ZEBRA", "Zürich Re"]),
    ("versionnumber ge 18", "", ["Zürich Re", "banana", "100% Pure"]),
    # lookups: _x_value and x, bare and quoted GUIDs in any case
    (f"_primarycontactid_value eq {c(1)}", "", ["Ångström", "émile"]),
    (f"primarycontactid eq {c(1).upper()}", "", ["Ångström", "émile"]),
    (f"primarycontactid eq '{c(2)}'", "", ["Apple", "banana"]),
    (f"primarycontactid ne {c(1)}", "", ["Apple", "O'Brien & Co", "banana"]),
    ("_parentaccountid_value eq null", "", ["Ångström", "Apple", "O'Brien & Co", "Zürich Re", "100% Pure"]),
    (f"parentaccountid eq {a(3)} or parentaccountid eq {a(1)}", "", ["apple", "ZEBRA", "émile", "Éclair", "banana"]),
    (f"_ownerid_value eq {U2}", "", ["apple", "ZEBRA", "O'Brien & Co", "100% Pure"]),
    ("ownerid eq null", "", ["banana"]),
    (f"accountid eq {a(7)}", "", ["Éclair"]),
    # dates and datetimes (a date against a datetime means midnight UTC; offsets convert to UTC)
    ("createdon ge 2026-11-28 and createdon lt 2026-11-29", "", ["apple", "Apple", "ZEBRA", "Éclair", "banana"]),
    ("createdon eq 2026-11-28T09:30:00Z", "", ["Apple", "banana"]),
    ("createdon eq 2026-11-28T10:30:00+01:00", "", ["Apple", "banana"]),
    ("createdon eq 2026-11-28T09:30Z", "", ["Apple", "banana"]),
    ("createdon eq 2026-11-28T09:30:00.25Z", "", ["apple"]),
    ("createdon gt 2026-11-28T09:30:00Z", "", ["apple", "ZEBRA", "émile", "Zürich Re"]),
    ("createdon lt 2026-11-28T01:00:00+02:00", "", ["Ångström", "O'Brien & Co", "100% Pure"]),
    ("createdon le 2026-11-28", "", ["Ångström", "O'Brien & Co", "Éclair", "100% Pure"]),
    ("createdon ne 2026-11-27T08:00:00.000Z", "", BY_ID[1:9]),
    ("modifiedon ge 2026-11-30T00:00:00-05:00", "", ["Zürich Re"]),
    # and / or / not / parentheses and their precedence
    ("name eq 'apple' or name eq 'banana' and statecode eq 1", "", ["apple", "Apple"]),
    ("(name eq 'apple' or name eq 'banana') and statecode eq 1", "", ["apple"]),
    (
        "not (statecode eq 1) and not (name eq 'apple')",
        "",
        ["Ångström", "émile", "O'Brien & Co", "Éclair", "banana", "100% Pure"],
    ),
    ("not (statecode eq 0 or revenue eq null)", "", ["apple", "Zürich Re"]),
    ("not not (name eq 'zebra')", "", ["ZEBRA"]),
    ("((industrycode eq 4))", "", ["émile", "Éclair"]),
    ("industrycode eq 4 and (contains(name,'É') or address1_city eq 'Paris')", "", ["émile", "Éclair"]),
    ("  name   eq\t'apple'  and(statecode eq 0)", "", ["Apple"]),
    # ordering: strings by lower-cased code point, nulls first asc / last desc, id tie-breaker
    ("", "", BY_ID),
    ("", "name", BY_NAME),
    ("", "name asc", BY_NAME),
    ("", "name desc", BY_NAME_DESC),
    (
        "",
        "address1_city",
        ["O'Brien & Co", "100% Pure", "ZEBRA", "banana", "apple", "Apple", "Ångström", "émile", "Éclair", "Zürich Re"],
    ),
    (
        "",
        "address1_city desc",
        ["Zürich Re", "émile", "Éclair", "Ångström", "apple", "Apple", "ZEBRA", "banana", "O'Brien & Co", "100% Pure"],
    ),
    (
        "",
        "revenue desc, name",
        ["Zürich Re", "Ångström", "apple", "Apple", "banana", "émile", "Éclair", "O'Brien & Co", "100% Pure", "ZEBRA"],
    ),
    (
        "",
        "revenue",
        ["ZEBRA", "100% Pure", "O'Brien & Co", "Éclair", "émile", "apple", "Apple", "banana", "Ångström", "Zürich Re"],
    ),
    (
        "",
        "createdon desc, name desc",
        ["Zürich Re", "émile", "ZEBRA", "apple", "banana", "Apple", "Éclair", "Ångström", "100% Pure", "O'Brien & Co"],
    ),
    (
        "statecode eq 0",
        "industrycode desc",
        ["Apple", "Ångström", "émile", "Éclair", "banana", "O'Brien & Co", "100% Pure"],
    ),
    (
        "",
        "_primarycontactid_value, name",
        ["100% Pure", "apple", "ZEBRA", "Zürich Re", "Éclair", "Ångström", "émile", "Apple", "banana", "O'Brien & Co"],
    ),
    (
        "",
        "ownerid desc",
        ["apple", "ZEBRA", "O'Brien & Co", "100% Pure", "Ångström", "Apple", "émile", "Éclair", "Zürich Re", "banana"],
    ),
    ("", "accountid desc", BY_ID[::-1]),
    (
        "",
        "  numberofemployees  asc ,name desc ",
        ["émile", "banana", "ZEBRA", "O'Brien & Co", "100% Pure", "apple", "Apple", "Éclair", "Ångström", "Zürich Re"],
    ),
    (
        "description ne null",
        "description",
        ["banana", "apple", "Apple", "O'Brien & Co", "Ångström", "100% Pure", "Zürich Re", "émile"],
    ),
]

CONTACT_CASES: list[tuple[str, str, list[str]]] = [
    ("birthdate eq 1990-05-17", "", ["Anna Berg"]),
    ("birthdate lt 1990-05-17", "", ["Carla Díaz"]),
    ("birthdate ge 1990-01-01", "birthdate desc", ["dan", "Anna Berg"]),
    ("birthdate ne 2000-01-01", "", ["Anna Berg", "Carla Díaz"]),
    ("birthdate eq null", "", ["Björn Åkesson"]),
    ("", "birthdate", ["Björn Åkesson", "Carla Díaz", "Anna Berg", "dan"]),
    (f"_parentcustomerid_value eq {a(1)}", "", ["Anna Berg"]),
    (f"parentcustomerid eq {c(1)}", "", ["Björn Åkesson"]),
    (f"parentcustomerid ne null and not (parentcustomerid eq {a(3)})", "", ["Anna Berg", "Björn Åkesson"]),
    ("contains(fullname,'ÅK')", "", ["Björn Åkesson"]),
    ("", "fullname desc", ["dan", "Carla Díaz", "Björn Åkesson", "Anna Berg"]),
]

PROBE_CASES: list[tuple[str, str, list[str]]] = [
    ("new_flag eq true", "", ["one", "four"]),
    ("new_flag eq false", "", ["two"]),
    ("new_flag ne true", "", ["two"]),
    ("not (new_flag eq true)", "", ["two", "three"]),
    ("new_flag eq null", "", ["three"]),
    ("new_ratio gt 0.5", "", ["two"]),
    ("new_ratio le -2.125", "", ["four"]),
    ("new_ratio ge 0", "new_ratio desc", ["two", "one"]),
    ("new_ratio eq 1.25 or new_flag eq true", "new_name", ["four", "one", "two"]),
    ("", "new_flag desc, new_name", ["four", "one", "two", "three"]),
    ("", "new_flag", ["three", "two", "one", "four"]),
]


@pytest.mark.parametrize(("filter_", "orderby", "expected"), ACCOUNT_CASES)
def test_account_query_returns_the_hand_written_rows_in_order(
    db: Engine, filter_: str, orderby: str, expected: list[str]
) -> None:
    assert query(db, ACCOUNT, SYSTEM_TABLES["account"], filter_, orderby) == expected


@pytest.mark.parametrize(("filter_", "orderby", "expected"), CONTACT_CASES)
def test_contact_query_handles_dates_and_polymorphic_lookups(
    db: Engine, filter_: str, orderby: str, expected: list[str]
) -> None:
    assert query(db, CONTACT, SYSTEM_TABLES["contact"], filter_, orderby) == expected


@pytest.mark.parametrize(("filter_", "orderby", "expected"), PROBE_CASES)
def test_custom_entity_query_handles_booleans_and_decimals(
    db: Engine, filter_: str, orderby: str, expected: list[str]
) -> None:
    assert query(db, PROBE, PROBE_TABLE, filter_, orderby) == expected


def test_conditions_do_not_depend_on_the_organisation(db: Engine) -> None:
    table = SYSTEM_TABLES["account"]
    stmt = select(table.c.accountid).where(filter_condition(parse_filter("name eq 'apple'"), ACCOUNT, table))
    with db.connect() as conn:
        assert sorted(conn.scalars(stmt)) == [a(2), a(3), a(99)]


def test_the_largest_allowed_filter_runs(db: Engine) -> None:
    # 500 comparisons is the limit; the database must accept a filter of that size.
    text_ = " or ".join(f"numberofemployees eq {n}" for n in range(500))
    assert query(db, ACCOUNT, SYSTEM_TABLES["account"], text_, "name") == [
        "100% Pure",
        "apple",
        "Apple",
        "O'Brien & Co",
        "ZEBRA",
        "Ångström",
        "Éclair",
    ]


# --- errors ----------------------------------------------------------------------------------

FILTER_ERRORS: list[tuple[str, str]] = [
    ("", "the expression is empty"),
    ("   ", "the expression is empty"),
    ("(name eq 'a'", "'(' at position 1 is never closed"),
    ("name eq 'a')", "')' at position 12 has no matching '('"),
    ("name eq 'abc", "unterminated string starting at position 9"),
    ("name eq 'it''s", "unterminated string"),
    ("name eq 'a\x00b'", "the string at position 9 contains a NUL character"),
    ("name like 'a'", "unknown operator 'like'"),
    ("name EQ 'a'", "operators are lower-case"),
    ("name eq 'a' extra", "expected 'and', 'or' or the end of the expression, found 'extra'"),
    ("name eq 'a' AND revenue eq 1", "keywords are lower-case"),
    ("(name eq 'a' OR revenue eq 1)", "keywords are lower-case"),
    ("name eq", "expected a value after 'eq', found the end of the expression"),
    ("name", "expected an operator"),
    ("substringof('a',name)", "unknown function 'substringof'"),
    ("Contains(name,'a')", "function names are lower-case"),
    ("'a' eq name", "the field goes on the left"),
    ("name eq 'a' and", "the expression ends where a condition was expected"),
    ("()", "empty parentheses"),
    ("not name eq 'a'", "write not (name ...)"),
    ("name eq name", "comparing two fields is not supported"),
    ("statecode eq True", "true, false and null are lower-case"),
    ("name eq 'a' && name eq 'b'", "unexpected character '&'"),
    ("revenue eq 12abc", "malformed value '12abc'"),
    ("createdon eq 2026-11-28T09:30:00", "malformed value '2026-11-28T09:30:00'"),
    ("createdon eq 2026-02-30", "2026-02-30 at position 14 is not a valid date"),
    ("createdon eq 2026-11-28T25:00:00Z", "is not a valid date-time"),
    ("createdon eq 2026-11-28T09:00:00+24:00", "is not a valid date-time"),
    ("contains(name 'a')", "expected ','"),
    ("contains(name,'a','b')", "expected ')'"),
    ("contains('a',name)", "the field goes on the left"),
    ("and eq 1", "found the keyword 'and'"),
    ("Microsoft.Dynamics.CRM.In(PropertyName='name')", "unknown function 'In' at position 1; supported: EqualUserId"),
    ("Microsoft.Dynamics.CRM.EqualUserId(PropertyName='name')", "EqualUserId() needs a lookup; 'name' is string"),
    ("Microsoft.Dynamics.CRM.EqualUserId(ownerid)", "malformed function at position 1"),
    ("Microsoft.Dynamics.CRM.NotEqualUserId(PropertyName='ownerid')", "NotEqualUserId() needs a signed-in user"),
    ("(" * 60 + "name eq 'a'" + ")" * 60, "nested too deeply"),
    (" or ".join(["revenue eq 1"] * 501), "too many conditions (at most 500)"),
    # checked against the entity
    ("revenue eq 'abc'", "$filter: 'revenue' is money; 'abc' is not a number"),
    ("foo eq 1", "'foo' is not a field of account"),
    ("_name_value eq null", "'_name_value' is not a field of account: 'name' is not a lookup"),
    ("_nope_value eq null", "'_nope_value' is not a field of account"),
    ("name eq 5", "'name' is string; 5 is not a quoted string"),
    ("statecode eq '1'", "'statecode' is optionset; '1' is not a number"),
    ("createdon eq 5", "'createdon' is datetime; 5 is not a date-time"),
    (f"createdon eq {c(1)}", "is not a date-time"),
    ("versionnumber eq true", "'versionnumber' is integer; true is not a number"),
    ("primarycontactid eq 'abc'", "'primarycontactid' is lookup; 'abc' is not a GUID"),
    (f"primarycontactid gt {c(1)}", "use eq or ne, not 'gt'"),
    (f"name eq {c(1)}", "is not a quoted string"),
    ("revenue gt null", "null can only be compared with eq or ne, not 'gt'"),
    ("contains(revenue,'1')", "contains() needs a string field; 'revenue' is money"),
    ("startswith(name,5)", "startswith() needs a quoted string; 5 is not a string"),
]


@pytest.mark.parametrize(("filter_", "fragment"), FILTER_ERRORS)
def test_malformed_filter_raises_odata_error_saying_what_is_wrong(filter_: str, fragment: str) -> None:
    table = SYSTEM_TABLES["account"]
    with pytest.raises(ODataError) as info:
        filter_condition(parse_filter(filter_), ACCOUNT, table)
    assert fragment in str(info.value)
    assert str(info.value).startswith("$filter: ")
    assert info.value.option == "$filter"


def test_type_mismatch_message_is_exact_and_names_the_field() -> None:
    with pytest.raises(ODataError) as info:
        filter_condition(parse_filter("revenue eq 'abc'"), ACCOUNT, SYSTEM_TABLES["account"])
    assert str(info.value) == "$filter: 'revenue' is money; 'abc' is not a number"
    assert info.value.field == "revenue"


def test_boolean_fields_only_take_eq_and_ne() -> None:
    with pytest.raises(ODataError, match="'new_flag' is boolean: use eq or ne, not 'lt'"):
        filter_condition(parse_filter("new_flag lt true"), PROBE, PROBE_TABLE)
    with pytest.raises(ODataError, match="'new_flag' is boolean; 1 is not true or false"):
        filter_condition(parse_filter("new_flag eq 1"), PROBE, PROBE_TABLE)


def test_parse_filter_builds_the_documented_tree() -> None:
    node = parse_filter("a eq 'O''Brien' or not (b gt -1.5) and startswith(c,'x')")
    assert node == Or(
        (
            Compare("a", "eq", Literal("string", "O'Brien", "'O''Brien'")),
            And(
                (
                    Not(Compare("b", "gt", Literal("number", Decimal("-1.5"), "-1.5"))),
                    Call("startswith", "c", Literal("string", "x", "'x'")),
                )
            ),
        )
    )


@pytest.mark.parametrize(
    ("literal", "kind", "value"),
    [
        ("'x'", "string", "x"),
        ("''''", "string", "'"),
        ("42", "number", 42),
        ("-7", "number", -7),
        ("0.125", "number", Decimal("0.125")),
        ("true", "boolean", True),
        ("false", "boolean", False),
        ("null", "null", None),
        ("3F2504E0-4F89-41D3-9A0C-0305E82C3301", "guid", "3f2504e0-4f89-41d3-9a0c-0305e82c3301"),
        ("2026-11-28", "date", dt.date(2026, 11, 28)),
        ("2026-11-28T09:30:00Z", "datetime", dt.datetime(2026, 11, 28, 9, 30)),
        ("2026-11-28T09:30:00.123456Z", "datetime", dt.datetime(2026, 11, 28, 9, 30, 0, 123456)),
        ("2026-11-28T01:30:00+02:00", "datetime", dt.datetime(2026, 11, 27, 23, 30)),
        ("2026-11-28T23:30:00-01:30", "datetime", dt.datetime(2026, 11, 29, 1, 0)),
    ],
)
def test_literals_parse_to_python_values(literal: str, kind: str, value: Any) -> None:
    node = parse_filter(f"f eq {literal}")
    assert isinstance(node, Compare)
    assert (node.value.kind, node.value.value) == (kind, value)
    assert type(node.value.value) is type(value)


FUZZ_WORDS = ["name", "revenue", "createdon", "eq", "gt", "and", "or", "not", "(", ")", ",", "'", "'x'", "5", "null"]
FUZZ_WORDS += ["-1.5", "true", "contains", "2026-11-28", "2026-11-28T09:30:00Z", c(1), "é", "$", "''"]
FUZZ_CONDITIONS = [
    "name eq 'x'",
    "revenue gt -1.5",
    "createdon le 2026-11-28T09:30:00Z",
    f"_primarycontactid_value ne {c(1)}",
    "contains(name,'%_')",
    "accountnumber eq null",
]


def _random_filter(rng: random.Random, depth: int = 0) -> list[str]:
    """A well-formed filter as a list of words (the fuzz test then damages some of them)."""
    roll = rng.random()
    if depth > 3 or roll < 0.4:
        return rng.choice(FUZZ_CONDITIONS).split(" ")
    if roll < 0.55:
        return ["not", "(", *_random_filter(rng, depth + 1), ")"]
    if roll < 0.7:
        return ["(", *_random_filter(rng, depth + 1), ")"]
    return [*_random_filter(rng, depth + 1), rng.choice(["and", "or"]), *_random_filter(rng, depth + 1)]


def test_any_input_gives_a_condition_or_an_odata_error() -> None:
    rng = random.Random(20261128)
    outcomes = set()
    for _ in range(3000):
        words = _random_filter(rng)
        for _damage in range(rng.choice([0, 0, 1, 2, 3])):
            at = rng.randrange(len(words) + 1)
            action = rng.choice(["insert", "delete", "replace"])
            if action == "insert" or not words:
                words.insert(at, rng.choice(FUZZ_WORDS))
            elif action == "delete":
                del words[min(at, len(words) - 1)]
            else:
                words[min(at, len(words) - 1)] = rng.choice(FUZZ_WORDS)
        try:
            filter_condition(parse_filter(" ".join(words)), ACCOUNT, SYSTEM_TABLES["account"])
            outcomes.add("condition")
        except ODataError as exc:
            assert str(exc).startswith("$filter: ")
            outcomes.add("error")
    assert outcomes == {"condition", "error"}


# --- $orderby, $select, $top, $expand --------------------------------------------------------


def test_parse_orderby_resolves_fields_and_directions() -> None:
    assert parse_orderby("name, revenue desc ,_primarycontactid_value asc", ACCOUNT) == [
        ("name", False),
        ("revenue", True),
        ("primarycontactid", False),
    ]
    assert parse_orderby("  ", ACCOUNT) == []


@pytest.mark.parametrize(
    ("orderby", "fragment"),
    [
        ("name sideways", "unknown direction 'sideways' for 'name': use asc or desc"),
        ("name DESC", "(lower-case)"),
        ("nope", "'nope' is not a field of account"),
        ("name,,revenue", "item 2 is empty"),
        ("name,", "item 2 is empty"),
        ("name asc desc", "'name asc desc' is not 'field asc' or 'field desc'"),
    ],
)
def test_bad_orderby_raises(orderby: str, fragment: str) -> None:
    with pytest.raises(ODataError) as info:
        parse_orderby(orderby, ACCOUNT)
    assert fragment in str(info.value)
    assert info.value.option == "$orderby"


def test_parse_select_accepts_attributes_lookup_values_and_system_fields() -> None:
    assert parse_select(" name , _primarycontactid_value,revenue,name", ACCOUNT) == [
        "name",
        "primarycontactid",
        "revenue",
    ]
    assert parse_select("ownerid,_createdby_value,versionnumber,modifiedon", ACCOUNT) == [
        "ownerid",
        "createdby",
        "versionnumber",
        "modifiedon",
    ]


@pytest.mark.parametrize(
    ("select_", "fragment"),
    [
        ("", "the list of fields is empty"),
        ("  ", "the list of fields is empty"),
        ("name,,revenue", "item 2 is empty"),
        ("name,", "item 2 is empty"),
        ("nope", "'nope' is not a field of account"),
        ("_name_value", "'name' is not a lookup"),
        ("Name", "'Name' is not a field of account"),
    ],
)
def test_bad_select_raises(select_: str, fragment: str) -> None:
    with pytest.raises(ODataError) as info:
        parse_select(select_, ACCOUNT)
    assert fragment in str(info.value)
    assert info.value.option == "$select"


@pytest.mark.parametrize(("top", "expected"), [("0", 0), ("25", 25), (" 5000 ", 5000), ("2147483647", 2147483647)])
def test_parse_top_accepts_non_negative_integers(top: str, expected: int) -> None:
    assert parse_top(top) == expected


@pytest.mark.parametrize(
    ("top", "fragment"),
    [
        ("-1", "'-1' is not a non-negative integer"),
        ("abc", "is not a non-negative integer"),
        ("", "is not a non-negative integer"),
        ("1.5", "is not a non-negative integer"),
        ("+3", "is not a non-negative integer"),
        ("1e3", "is not a non-negative integer"),
        ("²", "is not a non-negative integer"),
        ("2147483648", "is too large"),
    ],
)
def test_bad_top_raises(top: str, fragment: str) -> None:
    with pytest.raises(ODataError) as info:
        parse_top(top)
    assert fragment in str(info.value)
    assert info.value.option == "$top"


def test_parse_expand_single_and_polymorphic_targets() -> None:
    assert parse_expand("primarycontactid($select=fullname, emailaddress1)", ACCOUNT) == [
        Expand("primarycontactid", "primarycontactid", "contact", ["fullname", "emailaddress1"])
    ]
    assert parse_expand(
        "parentcustomerid_account($select=name,accountid) , parentcustomerid_contact($select=fullname)", CONTACT
    ) == [
        Expand("parentcustomerid_account", "parentcustomerid", "account", ["name", "accountid"]),
        Expand("parentcustomerid_contact", "parentcustomerid", "contact", ["fullname"]),
    ]


def test_parse_expand_finds_custom_targets_in_the_entities_given() -> None:
    assert parse_expand("new_probeid($select=new_name,new_flag)", VISIT, {"new_probe": PROBE}) == [
        Expand("new_probeid", "new_probeid", "new_probe", ["new_name", "new_flag"])
    ]
    with pytest.raises(ODataError, match="the target entity 'new_probe' of 'new_probeid' is unknown"):
        parse_expand("new_probeid($select=new_name)", VISIT)


@pytest.mark.parametrize(
    ("entity", "expand", "fragment"),
    [
        (ACCOUNT, "", "the list of lookups is empty"),
        (ACCOUNT, "primarycontactid", "'primarycontactid' needs a nested $select"),
        (CONTACT, "parentcustomerid($select=name)", "expand parentcustomerid_account or parentcustomerid_contact"),
        (CONTACT, "parentcustomerid_lead($select=fullname)", "'lead' is not a target of parentcustomerid"),
        (ACCOUNT, "name($select=fullname)", "'name' is not a lookup of account"),
        (ACCOUNT, "nope($select=fullname)", "'nope' is not a lookup of account"),
        (ACCOUNT, "primarycontactid($select=nope)", "primarycontactid($select=...): 'nope' is not a field of contact"),
        (ACCOUNT, "primarycontactid($select=)", "the list of fields is empty"),
        (ACCOUNT, "primarycontactid($filter=statecode eq 0)", "only $select is supported"),
        (ACCOUNT, "primarycontactid($select=fullname;$top=1)", "only $select is supported"),
        (ACCOUNT, "primarycontactid($select=fullname", "a '(' is never closed"),
        (ACCOUNT, "primarycontactid($select=fullname))", "has no matching '('"),
        (ACCOUNT, "primarycontactid($select=fullname),", "item 2 is empty"),
        (ACCOUNT, "primarycontactid($select=a)x", "is not 'lookup($select=field,...)'"),
        (
            ACCOUNT,
            "primarycontactid($select=fullname),primarycontactid($select=fullname)",
            "'primarycontactid' is expanded twice",
        ),
    ],
)
def test_bad_expand_raises(entity: Entity, expand: str, fragment: str) -> None:
    with pytest.raises(ODataError) as info:
        parse_expand(expand, entity)
    assert fragment in str(info.value)
    assert info.value.option == "$expand"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("name", ("name", "string")),
        ("accountid", ("accountid", "uniqueidentifier")),
        ("primarycontactid", ("primarycontactid", "lookup")),
        ("_primarycontactid_value", ("primarycontactid", "lookup")),
        ("_ownerid_value", ("ownerid", "lookup")),
        ("owningbusinessunit", ("owningbusinessunit", "lookup")),
        ("_modifiedby_value", ("modifiedby", "lookup")),
        ("createdon", ("createdon", "datetime")),
        ("versionnumber", ("versionnumber", "integer")),
        ("statecode", ("statecode", "optionset")),
    ],
)
def test_resolve_field_maps_query_names_to_columns(name: str, expected: tuple[str, str]) -> None:
    assert resolve_field(name, ACCOUNT) == expected


@pytest.mark.parametrize("name", ["organizationid", "ownerid__type", "_createdon_value", "__value", "nope"])
def test_resolve_field_refuses_other_names(name: str) -> None:
    with pytest.raises(ODataError, match=f"'{name}' is not a field of account"):
        resolve_field(name, ACCOUNT)
