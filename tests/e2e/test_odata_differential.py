"""The device's query engine answers exactly like the server's Web API (a differential test).

Against the live demo server, signed in as admin: add a few records with tricky values, fetch
whole record sets and the metadata over HTTP, then run the same option strings through
`runQuery` (webapp/static/js/odata.js) in a real Chromium page and through
GET /api/data/<set>. Both must give the same records in the same order with the same values,
page by page with the same skip tokens; malformed options must be refused by both with the
same message.

Option strings are written as the device takes them (and as they appear in a URL's query):
`%2B` is the `+` of a time-zone offset, `%26` an `&` and `%25` a `%` inside a string.
"""

from __future__ import annotations

import datetime as dt
import random
import statistics
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlsplit

from playwright.sync_api import Page

if TYPE_CHECKING:  # the fixtures' classes (tests/e2e is not a package: conftest is not imported here)
    from tests.e2e.conftest import ApiClient, LiveServer

ENTITY_SETS = {
    "account": "accounts",
    "contact": "contacts",
    "lead": "leads",
    "opportunity": "opportunities",
    "appointment": "appointments",
    "task": "tasks",
    "systemuser": "systemusers",
    "transactioncurrency": "transactioncurrencies",
}


@dataclass(frozen=True)
class Q:
    """One query: run on `entity` with `options`; `page` = the page size (None: the default)."""

    entity: str
    options: str
    page: int | None = None
    empty: bool | None = False  # True: an empty answer is the point; False: one is a test bug; None: either


MINE = "Microsoft.Dynamics.CRM.EqualUserId(PropertyName='ownerid')"
NOT_MINE = "Microsoft.Dynamics.CRM.NotEqualUserId(PropertyName='ownerid')"


# --- data ------------------------------------------------------------------------------------


def create(api: ApiClient, entity: str, body: dict[str, Any]) -> dict[str, Any]:
    """Create a record over the Web API and return it."""
    resp = api.post(f"/api/data/{ENTITY_SETS[entity]}", body)
    assert resp.status == 201, (entity, body, resp.status, resp.json)
    return resp.json  # type: ignore[no-any-return]


def add_tricky_records(api: ApiClient) -> dict[str, str]:
    """Records the demo lacks: non-ASCII, case-only differences, quotes, LIKE characters, NULLs,
    astral and private-use characters (UTF-16 and code-point order differ there), exact seconds."""
    emile = create(api, "contact", {"firstname": "Émile", "lastname": "D'Arcy", "birthdate": "1980-02-29"})
    create(api, "contact", {"firstname": "ÉMILE", "lastname": "d'arcy"})
    create(
        api, "contact", {"lastname": "Zoë", "parentcustomerid_contact@odata.bind": f"/contacts({emile['contactid']})"}
    )
    contact_bind = {"primarycontactid@odata.bind": f"/contacts({emile['contactid']})"}
    accounts: list[dict[str, Any]] = [
        {"name": "apple", "revenue": 1000, "numberofemployees": 10, **contact_bind},
        {"name": "Apple", "revenue": 1000, "numberofemployees": 10},
        {"name": "APPLE", "revenue": 1000.5, "numberofemployees": 10, **contact_bind},
        {"name": "ZEBRA", "address1_city": "Zürich"},
        {"name": "zebra", "address1_city": "zürich", "revenue": 7},
        {"name": "Ångström Labs", "accountnumber": "ÅNG-1", "address1_city": "Uppsala", "revenue": 1234.5},
        {"name": "émile & Fils", "address1_city": "Évian", "accountnumber": "E&F"},
        {"name": "O'Brien's Pub", "accountnumber": "O'B-7"},
        {"name": "100% Pure_Water\\Co", "accountnumber": "100%"},
        {"name": "ΣΟΦΟΣ Trading", "address1_city": "Αθήνα"},
        {"name": "İstanbul Bazaar", "address1_city": "İstanbul"},
        {"name": "\U0001d49cstral Ventures", "revenue": -50.25, "numberofemployees": 0, **contact_bind},
        {"name": "\uff26ullwidth Foods", "revenue": 0.5},
        {"name": "\ue000 Private Use", "accountnumber": "\U0001f600"},
        {"name": "Nulls Only"},
    ]
    created = [create(api, "account", body) for body in accounts]
    create(
        api,
        "appointment",
        {
            "subject": "Ångström review",
            "scheduledstart": "2026-11-15T09:30:45Z",
            "scheduledend": "2026-11-15T10:00:00Z",
            "regardingobjectid_account@odata.bind": f"/accounts({created[5]['accountid']})",
        },
    )
    create(api, "appointment", {"subject": "no dates at all"})
    create(api, "task", {"subject": "call back", "percentcomplete": 50, "prioritycode": 2})
    return {"emile": emile["contactid"], "astral": created[11]["accountid"]}


def fetch_all(api: ApiClient, entity_set: str) -> list[dict[str, Any]]:
    """Every record of an entity set, following @odata.nextLink."""
    records: list[dict[str, Any]] = []
    url: str | None = f"/api/data/{entity_set}"
    while url:
        resp = api.get(url)
        assert resp.status == 200, (url, resp.status, resp.json)
        records.extend(resp.json["value"])
        url = resp.json.get("@odata.nextLink")
    return records


def url_query(options: str) -> str:
    """The option string as a URL query: the same text once the server decodes it."""
    return quote(options.removeprefix("?"), safe="&=$%+")


# --- the two engines -------------------------------------------------------------------------


def on_server(api: ApiClient, q: Q) -> dict[str, Any]:
    """Pages (and the skip tokens between them) from the Web API, or its error."""
    headers = {"Prefer": f"odata.maxpagesize={q.page}"} if q.page else {}
    url: str | None = f"/api/data/{ENTITY_SETS[q.entity]}?{url_query(q.options)}"
    pages: list[list[dict[str, Any]]] = []
    tokens: list[str] = []
    while url:
        resp = api.get(url, headers)
        if resp.status != 200:
            return {"status": resp.status, "error": resp.json["error"]}
        pages.append(resp.json["value"])
        url = resp.json.get("@odata.nextLink")
        if url:
            tokens.append(parse_qs(urlsplit(url).query)["$skiptoken"][0])
        assert len(pages) < 1000, q
    return {"pages": pages, "tokens": tokens}


LOAD_ENGINE = """
async ({records, entities, userId}) => {
  const engine = await import('/static/js/odata.js');
  const index = {};
  for (const [entity, list] of Object.entries(records)) {
    const meta = entities.find((e) => e.logical_name === entity);
    index[entity] = new Map(list.map((r) => [r[meta.primary_id], r]));
  }
  window.__odt = {engine, records, entities, index, userId};
  return Object.keys(engine).sort();
}
"""

RUN_ON_DEVICE = """
({entity, options, page}) => {
  if (!window.__odt) return {missing: true};
  const {engine, records, entities, index, userId} = window.__odt;
  const meta = entities.find((e) => e.logical_name === entity);
  const resolve = (target, id) => index[target] && index[target].get(id);
  const pages = [];
  const tokens = [];
  let opts = options;
  try {
    for (;;) {
      const run = {maxPageSize: page ?? undefined, entities, resolve, userId};
      const result = engine.runQuery(records[entity], opts, meta, run);
      pages.push(result.value);
      if (result.nextSkip === null) break;
      opts = engine.nextPageOptions(opts, result.nextSkip);
      tokens.push(new URLSearchParams(opts).get('$skiptoken'));
      if (pages.length >= 1000) throw new Error('runaway paging');
    }
    return {pages, tokens};
  } catch (e) {
    return {thrown: {name: e.name, message: e.message, option: e.option, odata: e instanceof engine.ODataError}};
  }
}
"""


def on_device(page: Page, q: Q) -> dict[str, Any]:
    """Pages (and skip tokens) from runQuery in the browser, or what it threw."""
    result: dict[str, Any] = page.evaluate(RUN_ON_DEVICE, {"entity": q.entity, "options": q.options, "page": q.page})
    assert not result.get("missing"), f"the page at {page.url} was reloaded: the engine and its records are gone"
    return result


@dataclass
class Loaded:
    """What both engines work from: the signed-in client, the records, the metadata."""

    api: ApiClient
    records: dict[str, list[dict[str, Any]]]  # by entity logical name
    entities: dict[str, dict[str, Any]]  # GET /api/metadata's entities by logical name
    made: dict[str, str]  # ids of some of the tricky records


def load(live_server: LiveServer, page: Page) -> Loaded:
    """Sign in, add the tricky records, fetch everything, and load the engine into the page."""
    api = live_server.client("admin")
    made = add_tricky_records(api)
    records = {entity: fetch_all(api, entity_set) for entity, entity_set in ENTITY_SETS.items()}
    metadata = api.get("/api/metadata")
    assert metadata.status == 200, metadata.json
    me = api.get("/api/auth/me").json["user"]["id"]
    page.goto("/")
    exported = page.evaluate(LOAD_ENGINE, {"records": records, "entities": metadata.json["entities"], "userId": me})
    for name in ("ODataError", "parseOptions", "compileFilter", "compareRecords", "runQuery"):
        assert name in exported, exported
    entities = {e["logical_name"]: e for e in metadata.json["entities"]}
    return Loaded(api, records, entities, made)


# --- the queries -----------------------------------------------------------------------------


def queries(records: dict[str, list[dict[str, Any]]], made: dict[str, str]) -> list[Q]:
    """The differential queries; ids and thresholds come from the data so every query selects some."""
    accounts, contacts, opportunities = records["account"], records["contact"], records["opportunity"]
    emile, astral = made["emile"], made["astral"]
    owner = accounts[0]["_ownerid_value"]
    unit = accounts[0]["_owningbusinessunit_value"]
    company = next(c["_parentcustomerid_value"] for c in contacts if c["_parentcustomerid_value"])
    customers = [o["_customerid_value"] for o in opportunities if o["_customerid_value"]]
    version = int(statistics.median(a["versionnumber"] for a in accounts))
    user_unit = records["systemuser"][0]["_businessunitid_value"]
    return [
        # strings: all six operators, case-insensitive, code-point order, nulls
        Q("account", "$filter=name eq 'apple'&$select=name"),
        Q("account", "$filter=name ne 'APPLE'&$orderby=name"),
        Q("account", "$filter=name gt 'm'&$orderby=name desc"),
        Q("account", "$filter=name ge 'zebra'&$orderby=name"),
        Q("account", "$filter=name lt 'b'&$orderby=name asc"),
        Q("account", "$filter=name le 'apple'&$orderby=name desc"),
        Q("account", "$filter=name gt '\uff46'&$orderby=name"),
        Q("account", "$filter=name ge '\ue000'&$orderby=name desc"),
        Q("account", "$filter=name eq 'o''brien''s pub'"),
        Q("account", "$filter=name eq 'σοφοσ trading'", empty=True),
        Q("account", "$filter=not (not (name eq 'ZeBrA'))&$orderby=accountid desc"),
        # contains / startswith / endswith: non-ASCII, quotes, LIKE's own characters
        Q("account", "$filter=contains(name,'STRÖM')"),
        Q("account", "$filter=startswith(name,'É')&$orderby=name"),
        Q("account", "$filter=endswith(name,'''s pub')"),
        Q("account", "$filter=contains(name,'%25') or contains(name,'_w') or contains(name,'\\')"),
        Q("account", "$filter=contains(name,'%26 fils')"),
        Q("account", "$filter=contains(name,'_')"),
        Q("account", "$filter=startswith(name,'σοφος ') or contains(name,'İst')&$orderby=name"),
        Q("account", "$filter=startswith(name,'\U0001d49c') or endswith(accountnumber,'\U0001f600')"),
        Q("account", "$filter=not contains(address1_city,'o')&$orderby=address1_city,name"),
        Q("account", "$filter=contains(accountnumber,'')&$orderby=accountnumber desc"),
        Q("account", "?$filter=startswith(name,'a')&$orderby=name"),
        # numbers and option sets
        Q("account", "$filter=revenue gt 1000000&$orderby=revenue desc"),
        Q("account", "$filter=revenue ge 0.5 and revenue le 1234.50&$orderby=revenue,name"),
        Q("account", "$filter=revenue lt 0 or numberofemployees eq 0"),
        Q("account", "$filter=revenue eq 1000.5 or revenue eq 1000"),
        Q("account", "$filter=numberofemployees eq null&$orderby=name"),
        Q("account", "$filter=numberofemployees ne null&$orderby=numberofemployees desc,name"),
        Q("account", "$filter=industrycode eq 8 or industrycode eq 5&$orderby=industrycode,name desc"),
        Q("account", "$filter=(industrycode eq 8 or industrycode eq 5) and not (statecode eq 1)&$orderby=revenue desc"),
        Q("account", "$filter=versionnumber gt " + str(version) + "&$orderby=versionnumber desc"),
        # null rules: ne skips nulls, not (eq) keeps them
        Q("account", "$filter=accountnumber ne 'ÅNG-1'&$orderby=accountnumber"),
        Q("account", "$filter=not (accountnumber eq 'ång-1')&$orderby=accountnumber desc"),
        # lookups in both forms, quoted and upper-case GUIDs, system lookups
        Q("account", f"$filter=_primarycontactid_value eq {emile}"),
        Q("account", f"$filter=primarycontactid eq {emile.upper()}&$select=name,primarycontactid"),
        Q(
            "account",
            f"$filter=primarycontactid eq '{emile}' or primarycontactid eq null"
            "&$orderby=_primarycontactid_value desc,name",
        ),
        Q("account", f"$filter=primarycontactid ne {emile}&$orderby=primarycontactid"),
        Q("account", f"$filter=ownerid eq {owner}&$orderby=_ownerid_value,name"),
        Q(
            "account",
            f"$filter=_owningbusinessunit_value ne {unit} and createdby ne null&$orderby=owningbusinessunit desc",
        ),
        Q("account", f"$filter=accountid eq {astral}"),
        Q("account", "$orderby=accountid desc&$top=5"),
        # datetimes on system fields, multi-key orderings with nulls and ties
        Q(
            "account",
            "$filter=createdon le 2100-01-01T00:00Z and modifiedon ge 2000-01-01&$orderby=modifiedon desc,name",
        ),
        Q("account", "$orderby=address1_city desc,revenue asc,name"),
        Q("account", "$orderby=statecode desc,industrycode"),
        # $top, $select, $expand, paging
        Q("account", "$orderby=name&$top=7"),
        Q("account", "$top=0", empty=True),
        Q("account", "$select=name,revenue,_primarycontactid_value,industrycode&$orderby=revenue desc&$top=10"),
        Q("account", "$select=accountid, name ,name&$orderby=name desc"),
        Q("account", "$expand=primarycontactid($select=fullname,emailaddress1)&$select=name&$orderby=name"),
        Q(
            "account",
            "$expand=transactioncurrencyid($select=currencyname,isocurrencycode),parentaccountid($select=name)"
            "&$filter=transactioncurrencyid ne null",
        ),
        Q("account", "$orderby=name", page=7),
        Q("account", "$orderby=revenue desc&$top=23&$select=name,revenue", page=5),
        Q("account", "$filter=statecode eq 0&$expand=primarycontactid($select=fullname)&$top=30", page=9),
        # contacts: dates, a polymorphic lookup
        Q("contact", "$filter=birthdate gt 1980-01-01&$orderby=birthdate desc"),
        Q("contact", "$filter=birthdate eq 1980-02-29 or birthdate eq null&$orderby=birthdate,fullname"),
        Q("contact", "$filter=birthdate le 1975-06-30&$orderby=birthdate,contactid desc"),
        Q("contact", f"$filter=parentcustomerid eq {company} or _parentcustomerid_value eq {emile}"),
        Q("contact", "$orderby=parentcustomerid desc,fullname"),
        Q(
            "contact",
            "$expand=parentcustomerid_account($select=name,revenue),parentcustomerid_contact($select=fullname)"
            "&$select=fullname&$orderby=fullname",
        ),
        Q("contact", "$filter=contains(fullname,'ë') or startswith(lastname,'D''')&$orderby=fullname"),
        Q("contact", "$filter=fullname eq 'émile d''arcy'&$orderby=fullname"),
        Q("contact", "$filter=statecode eq 0&$orderby=fullname desc", page=30),
        # leads
        Q("lead", "$filter=estimatedamount lt 50000 and leadsourcecode ne 8&$orderby=estimatedamount,fullname desc"),
        Q(
            "lead",
            "$filter=not (statecode eq 0) or not (not (leadsourcecode eq 8))&$orderby=leadsourcecode desc,subject",
        ),
        Q("lead", "$filter=parentaccountid eq null&$select=subject,parentaccountid"),
        # opportunities: dates, money, polymorphic expand
        Q(
            "opportunity",
            "$filter=estimatedclosedate ge 2026-12-01 and estimatedclosedate lt 2027-03-01&$orderby=estimatedclosedate",
        ),
        Q("opportunity", "$filter=actualclosedate ne null&$orderby=actualclosedate desc,estimatedvalue"),
        Q("opportunity", "$filter=closeprobability ge 50&$orderby=closeprobability desc"),
        Q("opportunity", f"$filter=customerid eq {customers[0]} or _customerid_value eq {customers[-1]}"),
        Q(
            "opportunity",
            "$expand=customerid_contact($select=fullname),customerid_account($select=name),"
            "originatingleadid($select=fullname,subject)&$orderby=estimatedvalue desc",
        ),
        Q("opportunity", "$orderby=estimatedclosedate desc,name&$select=name,estimatedclosedate,estimatedvalue"),
        # appointments and tasks: datetimes with Z, offsets, fractions, date literals
        Q("appointment", "$filter=scheduledstart ge 2026-11-01T00:00:00Z&$orderby=scheduledstart desc"),
        Q("appointment", "$filter=scheduledstart lt 2026-10-15T09:30%2B02:00&$orderby=scheduledstart"),
        Q("appointment", "$filter=scheduledend gt 2026-11-01&$orderby=scheduledend,subject"),
        Q("appointment", "$filter=actualend eq null&$orderby=scheduledend"),
        Q(
            "appointment",
            "$filter=scheduledstart gt 2026-11-15T09:30:44.999999Z and scheduledstart le 2026-11-15T09:30:45Z",
        ),
        Q("appointment", "$filter=scheduledstart eq 2026-11-15T10:30:45%2B01:00"),
        Q("appointment", "$filter=scheduledstart eq 2026-11-15T04:30:45-05:00 or scheduledstart eq null"),
        Q("appointment", "$filter=regardingobjectid ne null&$orderby=_regardingobjectid_value,subject"),
        Q("appointment", "$expand=regardingobjectid_account($select=name)&$select=subject&$orderby=subject"),
        Q("task", "$filter=percentcomplete gt 0 and percentcomplete lt 100"),
        Q(
            "task",
            "$filter=prioritycode eq 2 or scheduledend lt 2026-10-01T00:00:00-05:00"
            "&$orderby=prioritycode desc,scheduledend",
        ),
        Q("task", "$orderby=actualend desc,percentcomplete"),
        # the signed-in user (the reference's eq-userid / ne-userid): admin owns the tricky records,
        # colleagues own the demo's
        Q("account", f"$filter={MINE}&$orderby=name"),
        Q("account", f"$filter=statecode eq 0 and not {MINE}&$orderby=name desc"),
        Q("account", f"$filter={NOT_MINE}&$orderby=_ownerid_value,name", page=9),
        Q("account", f"$filter={MINE.replace('ownerid', '_createdby_value')} or primarycontactid eq null"),
        Q("account", f"$filter=({MINE}) and revenue ge 1000&$orderby=revenue desc"),
        Q("contact", f"$filter=statecode eq 0 and {MINE.replace('ownerid', '_ownerid_value')}&$orderby=fullname"),
        Q("lead", f"$filter={NOT_MINE.replace('ownerid', 'parentaccountid')}", empty=None),
        Q("task", f"$filter={MINE}&$orderby=subject"),
        # booleans
        Q("systemuser", "$filter=isdisabled eq false&$orderby=fullname"),
        Q(
            "systemuser",
            f"$filter=isdisabled ne true and businessunitid eq {user_unit}&$select=fullname,businessunitid",
        ),
    ]


MALFORMED = [
    Q("account", "$filter=Microsoft.Dynamics.CRM.EqualUserId(PropertyName='name')"),
    Q("account", "$filter=Microsoft.Dynamics.CRM.EqualUserId(PropertyName='nosuch')"),
    Q("account", "$filter=Microsoft.Dynamics.CRM.EqualUserTeams(PropertyName='ownerid')"),
    Q("account", "$filter=Microsoft.Dynamics.CRM.EqualUserId(ownerid)"),
    Q("account", "$filter=microsoft.dynamics.crm.EqualUserId(PropertyName='ownerid')"),
    Q("account", "$filter=Microsoft.Dynamics.CRM.EqualUserId(PropertyName='ownerid') eq true"),
    Q("account", "$filter=name eq"),
    Q("account", "$filter=name eq 'unterminated"),
    Q("account", "$filter=name Eq 'x'"),
    Q("account", "$filter=name eq 'a' AND name eq 'b'"),
    Q("account", "$filter=Contains(name,'x')"),
    Q("account", "$filter=contains(name,'x'"),
    Q("account", "$filter=nosuchfield eq 1"),
    Q("account", "$filter=name eq 5"),
    Q("account", "$filter=revenue gt 'big'"),
    Q("account", "$filter=not name eq 'x'"),
    Q("account", "$filter=(name eq 'x'"),
    Q("account", "$filter=name eq 'x')"),
    Q("account", "$filter=()"),
    Q("account", "$filter=12 eq name"),
    Q("account", "$filter=name eq Name"),
    Q("account", "$filter=name eq NULL"),
    Q("account", "$filter=name gt null"),
    Q("account", "$filter=contains(revenue,'1')"),
    Q("account", "$filter=startswith(name,1)"),
    Q("account", "$filter=_name_value eq null"),
    Q("account", "$filter=_nothing_value eq null"),
    Q("account", "$filter=primarycontactid gt 3f2504e0-4f89-41d3-9a0c-0305e82c3301"),
    Q("account", "$filter=primarycontactid eq 'not-a-guid'"),
    Q("account", "$filter=createdon gt 2026-11-28T25:00Z"),
    Q("account", "$filter=createdon gt 0001-01-01T00:00%2B01:00"),
    Q("account", "$filter=createdon gt 2026-11-28x"),
    Q("account", "$filter=name eq '\U0001d49c' and § eq 1"),
    Q("account", "$filter=name eq 'a%00'"),
    Q("account", "$filter=" + "not (" * 51 + "name eq 'x'" + ")" * 51),
    Q("account", "$filter=" + " or ".join(["revenue eq 1"] * 501)),
    Q("contact", "$filter=birthdate eq 2026-02-30"),
    Q("contact", "$filter=birthdate gt 2026-01-01T00:00Z"),
    Q("systemuser", "$filter=isdisabled gt true"),
    Q("systemuser", "$filter=isdisabled eq 1"),
    Q("account", "$orderby=name sideways"),
    Q("account", "$orderby=name ASC"),
    Q("account", "$orderby=name,,revenue"),
    Q("account", "$orderby=name asc desc"),
    Q("account", "$orderby=nosuch"),
    Q("account", "$select="),
    Q("account", "$select=name,,revenue"),
    Q("account", "$select=_revenue_value"),
    Q("account", "$top=-1"),
    Q("account", "$top=abc"),
    Q("account", "$top=99999999999"),
    Q("account", "$expand=primarycontactid"),
    Q("account", "$expand=primarycontactid($select=nosuch)"),
    Q("account", "$expand=primarycontactid($top=1)"),
    Q("account", "$expand=primarycontactid($select=fullname;$select=fullname)"),
    Q("account", "$expand=primarycontactid($select=fullname),primarycontactid($select=fullname)"),
    Q("account", "$expand=primarycontactid($select=fullname"),
    Q("account", "$expand=name($select=x)"),
    Q("account", "$expand=,primarycontactid($select=fullname)"),
    Q("contact", "$expand=parentcustomerid($select=name)"),
    Q("contact", "$expand=parentcustomerid_lead($select=fullname)"),
    Q("account", "$skiptoken=garbage"),
    Q("account", "$skiptoken=eyJvIjogLTF9"),
    Q("account", "$foo=1"),
    Q("account", "$filter=name eq 'x'&$count=true"),
]


# --- generated queries -----------------------------------------------------------------------

GENERATED = 120  # seeded random queries on top of the written ones
SEED = 2026
SIX = ("eq", "ne", "gt", "ge", "lt", "le")
STRINGS = ("string", "memo")
NUMBERS = ("integer", "decimal", "money", "optionset")
SYSTEM = (("ownerid", "lookup"), ("createdby", "lookup"), ("createdon", "datetime"), ("modifiedon", "datetime"))


def string_literal(text: str) -> str:
    """A quoted $filter string, escaped for the option string (quotes doubled; %, & and + encoded)."""
    escaped = text.replace("'", "''").replace("%", "%25").replace("&", "%26").replace("+", "%2B")
    return f"'{escaped}'"


def number_literal(value: float) -> str:
    """A number as a $filter literal (no exponent)."""
    text = format(Decimal(repr(value)), "f")
    return text.removesuffix(".0")


def datetime_literal(rng: random.Random, value: str) -> str:
    """The same instant written one of several ways: Z, an offset, a fraction, or just its date."""
    moment = dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")
    shape = rng.randrange(5)
    if shape == 0:
        return value
    if shape == 1:
        return (moment + dt.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S") + "%2B02:00"
    if shape == 2:
        return (moment - dt.timedelta(hours=5, minutes=30)).strftime("%Y-%m-%dT%H:%M") + "-05:30"
    if shape == 3:
        return moment.strftime("%Y-%m-%dT%H:%M:%S") + rng.choice([".5Z", ".000001Z", ".999999Z"])
    return moment.strftime("%Y-%m-%d")


def random_condition(rng: random.Random, fields: list[tuple[str, str]], rows: list[dict[str, Any]], depth: int) -> str:
    """A random condition whose literals come from the data, so that it selects something."""
    roll = rng.random()
    if depth < 3 and roll < 0.25:
        items = [random_condition(rng, fields, rows, depth + 1) for _ in range(rng.randint(2, 3))]
        return "(" + f" {rng.choice(['and', 'or'])} ".join(items) + ")"
    if depth < 3 and roll < 0.35:
        return f"not ({random_condition(rng, fields, rows, depth + 1)})"
    name, type_ = rng.choice(fields)
    key = f"_{name}_value" if type_ == "lookup" else name
    field = key if type_ == "lookup" and rng.random() < 0.5 else name
    present = [row[key] for row in rows if row.get(key) is not None]
    if not present or rng.random() < 0.1:
        return f"{field} {rng.choice(['eq', 'ne'])} null"
    value = rng.choice(present)
    if type_ in STRINGS:
        if rng.random() < 0.4:
            start = rng.randrange(len(value) + 1)
            part = value[start : start + rng.randint(0, 4)]
            part = rng.choice([part, part.upper(), part.lower()])
            return f"{rng.choice(['contains', 'startswith', 'endswith'])}({field},{string_literal(part)})"
        literal = rng.choice([value, value.upper(), value.lower(), value[: len(value) // 2]])
        return f"{field} {rng.choice(SIX)} {string_literal(literal)}"
    if type_ in NUMBERS:
        shift = 0 if type_ == "optionset" else rng.choice([0, 0, -0.5, 0.5, 1])
        return f"{field} {rng.choice(SIX)} {number_literal(value + shift)}"
    if type_ == "boolean":
        return f"{field} {rng.choice(['eq', 'ne'])} {rng.choice(['true', 'false'])}"
    if type_ == "date":
        day = dt.date.fromisoformat(value) + dt.timedelta(days=rng.choice([0, 0, -1, 1]))
        return f"{field} {rng.choice(SIX)} {day.isoformat()}"
    if type_ == "datetime":
        return f"{field} {rng.choice(SIX)} {datetime_literal(rng, value)}"
    literal = rng.choice([value, value.upper(), f"'{value}'"])
    return f"{field} {rng.choice(['eq', 'ne'])} {literal}"


def random_queries(data: Loaded, count: int, seed: int = SEED) -> list[Q]:
    """Seeded random queries (filters, orderings, $top, $select, page sizes) over the fetched data."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        entity = rng.choice(["account", "contact", "lead", "opportunity", "appointment", "task"])
        meta, rows = data.entities[entity], data.records[entity]
        fields = [(a["logical_name"], a["type"]) for a in meta["attributes"]] + list(SYSTEM)
        names = [n for n, _t in fields] + [f"_{n}_value" for n, t in fields if t == "lookup"]
        parts = []
        if rng.random() < 0.9:
            parts.append("$filter=" + random_condition(rng, fields, rows, 0))
        if rng.random() < 0.8:
            keys = rng.sample(names, k=rng.randint(1, 3))
            parts.append("$orderby=" + ",".join(k + rng.choice(["", " asc", " desc"]) for k in keys))
        if rng.random() < 0.3:
            parts.append(f"$top={rng.randint(0, 25)}")
        if rng.random() < 0.3:
            parts.append("$select=" + ",".join(rng.sample(names, k=rng.randint(1, 4))))
        out.append(Q(entity, "&".join(parts), page=rng.choice([None, None, None, 7, 11]), empty=None))
    return out


def view_queries(data: Loaded) -> list[Q]:
    """Every system view of the entities loaded, as the list screen queries it (the "My …" views
    filter on the signed-in user)."""
    out = []
    for entity in ENTITY_SETS:
        for v in data.entities[entity]["views"]:
            parts = [f"$filter={v['filter']}"] if v["filter"] else []
            parts += [f"$orderby={v['orderby']}"] if v["orderby"] else []
            out.append(Q(entity, "&".join(parts), empty=None))
    return out


# --- the tests -------------------------------------------------------------------------------


def _ids(page: list[dict[str, Any]], primary_id: str) -> list[str]:
    return [r.get(primary_id) for r in page]


def _difference(q: Q, server: dict[str, Any], device: dict[str, Any], primary_id: str) -> str | None:
    """Why the two answers differ, or None when they agree."""
    if "pages" not in server or "pages" not in device:
        return f"server={server.get('error') or 'records'} device={device.get('thrown') or 'records'}"
    if len(server["pages"]) != len(device["pages"]):
        return f"{len(server['pages'])} pages on the server, {len(device['pages'])} on the device"
    for n, (mine, theirs) in enumerate(zip(device["pages"], server["pages"], strict=True)):
        server_ids, device_ids = _ids(theirs, primary_id), _ids(mine, primary_id)
        if server_ids != device_ids:
            at = next(
                (i for i, (a, b) in enumerate(zip(server_ids, device_ids, strict=False)) if a != b),
                min(len(server_ids), len(device_ids)),
            )
            return (
                f"page {n}: {len(server_ids)} records on the server, {len(device_ids)} on the device; "
                f"from position {at}: server {server_ids[at : at + 3]}, device {device_ids[at : at + 3]}"
            )
        for a, b in zip(mine, theirs, strict=True):
            if a != b:
                keys = sorted(k for k in set(a) | set(b) if a.get(k, "<absent>") != b.get(k, "<absent>"))
                diff = {k: (b.get(k, "<absent>"), a.get(k, "<absent>")) for k in keys}
                return f"page {n}, record {b.get(primary_id)}: (server, device) differ in {diff}"
    if server["tokens"] != device["tokens"]:
        return f"skip tokens: server {server['tokens']}, device {device['tokens']}"
    return None


def test_the_device_answers_every_query_with_the_servers_records_in_the_servers_order(
    live_server: LiveServer, phone_page: Page
) -> None:
    data = load(live_server, phone_page)
    written = queries(data.records, data.made) + view_queries(data)
    generated = random_queries(data, count=GENERATED)
    assert len(written) >= 45
    failures = []
    for q in written + generated:
        server = on_server(data.api, q)
        device = on_device(phone_page, q)
        problem = _difference(q, server, device, data.entities[q.entity]["primary_id"])
        total = sum(len(p) for p in server.get("pages", []))
        if problem is None and q.empty is not None and (total == 0) != q.empty:
            problem = f"{total} records: the query does not test what it means to (fix the query or the data)"
        if problem is not None:
            failures.append(f"{q.entity} {q.options!r} (page size {q.page}): {problem}")
    total_queries = len(written) + len(generated)
    assert not failures, f"{len(failures)} of {total_queries} queries differ:\n" + "\n".join(failures)


def test_the_device_refuses_malformed_options_with_the_servers_message(
    live_server: LiveServer, phone_page: Page
) -> None:
    data = load(live_server, phone_page)
    failures = []
    for q in MALFORMED:
        server = on_server(data.api, q)
        device = on_device(phone_page, q)
        thrown = device.get("thrown")
        if server.get("status") != 400:
            failures.append(f"{q.options!r}: the server answered {server.get('status', 200)}, not 400")
        elif thrown is None or not thrown["odata"]:
            failures.append(f"{q.options!r}: the device did not throw an ODataError but {thrown or 'records'}")
        elif thrown["message"] != server["error"]["message"]:
            failures.append(f"{q.options!r}:\n  server {server['error']['message']!r}\n  device {thrown['message']!r}")
        elif not thrown["option"] or thrown["option"] not in thrown["message"]:
            failures.append(f"{q.options!r}: the error's option {thrown['option']!r} is not named in its message")
    assert len(MALFORMED) >= 10
    assert not failures, f"{len(failures)} of {len(MALFORMED)} malformed option strings differ:\n" + "\n".join(failures)
