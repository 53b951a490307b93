"""Demo data: the `contoso` organisation (`outpost demo`) and bulk records (`outpost load-demo`).

`build_demo` writes a small, realistic and deterministic organisation through the same
`insert_record` path the API uses, so every record is change-logged and versioned like any
other. All randomness comes from one seeded generator and dates are reckoned from a fixed
reference date, so two runs give the same data apart from ids and timestamps.

`load_bulk` adds many records fast for benchmarks: Core executemany in chunks, with the
change log written through `reserve_changes` so each record still has its own change number.
"""

from __future__ import annotations

import base64
import datetime as dt
import random
import sys
import unicodedata
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple

from argon2 import PasswordHasher
from sqlalchemy import insert, or_, select
from sqlalchemy.orm import Session
from tqdm import tqdm

from webapp.crm.changes import reserve_changes, utcnow
from webapp.crm.orgs import (
    create_business_unit,
    create_position,
    create_team,
    org_id_by_name,
    root_business_unit,
)
from webapp.crm.records import Actor, Owner, fetch, insert_record, update_record
from webapp.crm.registry import OrgModel, Registry
from webapp.security.roles import BU, ORG, PARENTCHILD, PRIVILEGES, USER, grant, role_id
from webapp.security.setup import new_organization, new_user

DEMO_ORG = "contoso"
DEMO_FRIENDLY_NAME = "Contoso"
DEMO_PASSWORD = "Outpost-2026!"
DEMO_SEED = 2026
REFERENCE_DATE = dt.date(2026, 11, 1)  # "today" in the demo data
BULK_CHUNK = 5_000
CENT = Decimal("0.01")

# --- people and structure ----------------------------------------------------------------


class DemoUser(NamedTuple):
    """One demo sign-in: who they are, where they sit, whom they report to."""

    username: str
    firstname: str
    lastname: str
    unit: str  # key into BUSINESS_UNITS ("root" = the organisation's root unit)
    role: str
    position: str | None  # key into POSITIONS
    manager: str | None  # username


BUSINESS_UNITS = {"east": "Sales East", "west": "Sales West", "support": "Support"}
POSITIONS = (
    ("director", "Sales Director", None),
    ("lead", "Regional Sales Lead", "director"),
    ("executive", "Account Executive", "lead"),
)
DEMO_USERS = (
    DemoUser("admin", "Dana", "Whitfield", "root", "System Administrator", None, None),
    DemoUser("manager", "Maria", "Campbell", "root", "Sales Manager", "director", None),
    DemoUser("east1", "Nancy", "Anderson", "east", "Salesperson", "lead", "manager"),
    DemoUser("east2", "Kevin", "Patel", "east", "Salesperson", "executive", "manager"),
    DemoUser("west1", "Carlos", "Mendoza", "west", "Salesperson", "lead", "manager"),
    DemoUser("west2", "Emily", "Chen", "west", "Salesperson", "executive", "manager"),
    DemoUser("support", "Samuel", "Okafor", "support", "Customer Service Representative", None, None),
)
# The security roles each demo user should get once roles exist (granted by the security work).
DEMO_ROLES = {u.username: u.role for u in DEMO_USERS}
SALESPEOPLE = {"east": ("east1", "east2"), "west": ("west1", "west2")}
TEAMS = (
    ("East Field Team", "east", ("east1", "east2")),
    ("West Field Team", "west", ("west1", "west2")),
    ("Key Accounts", "root", ("manager", "east1", "west1")),
)

# --- catalogue -----------------------------------------------------------------------------

CURRENCIES = (("Euro", "EUR", "€", Decimal("0.92")), ("Pound Sterling", "GBP", "£", Decimal("0.79")))
PRODUCTS = (
    ("FT-100", 'Field Tablet 10"', "649.00", "Light tablet for sales visits, 10-inch screen, LTE."),
    ("FT-200", 'Rugged Field Tablet 12"', "1199.00", "Drop-proof, sunlight-readable tablet for site crews."),
    ("BS-110", "Handheld Barcode Scanner", "289.00", "1D/2D scanner with Bluetooth and a 12-hour battery."),
    ("MP-300", "Mobile Receipt Printer", "419.00", "Belt-worn thermal printer for invoices on the spot."),
    ("DS-050", "Tablet Docking Station", "159.00", "Charging dock with Ethernet and two USB ports."),
    ("VM-020", "Vehicle Mount Kit", "95.00", "Dashboard mount for field tablets."),
    ("LIC-1Y", "Mobile CRM Licence (1 year)", "540.00", "One named user, offline sync included."),
    ("LIC-3Y", "Mobile CRM Licence (3 years)", "1450.00", "One named user for three years."),
    ("SVC-ONB", "Onboarding Workshop (1 day)", "1800.00", "On-site training for up to twelve people."),
    ("SVC-SUP", "Premium Support (1 year)", "2400.00", "24/7 support with a four-hour response time."),
    ("SVC-MIG", "Data Migration Package", "4500.00", "Import of accounts, contacts and history."),
    ("WAR-2Y", "Extended Warranty (2 years)", "120.00", "Repair or replacement for any device."),
)
COMPETITORS = (
    (
        "Fabrikam Field Systems",
        "https://www.fabrikam.example",
        "Low entry price; strong in retail.",
        "No offline mode; slow support.",
        (("1 Microsoft Way", "Redmond", "United States"), ("5 Canada Square", "London", "United Kingdom")),
    ),
    (
        "Northwind Mobile",
        "https://www.northwindmobile.example",
        "Large partner network.",
        "Ageing hardware line; long contracts.",
        (("200 Park Avenue", "New York", "United States"),),
    ),
    (
        "Litware Solutions",
        "https://www.litware.example",
        "Good analytics; popular with finance teams.",
        "Weak on rugged devices.",
        (("Friedrichstrasse 68", "Berlin", "Germany"), ("12 Rue de la Paix", "Paris", "France")),
    ),
)
CONNECTION_ROLES = (
    ("Decision Maker", 4, "Signs off the purchase."),
    ("Influencer", 4, "Shapes the decision without signing it."),
    ("Partner", 1, "Works with the other party as a business partner."),
)

# --- places and names ----------------------------------------------------------------------


def words(text: str, sep: str | None = None) -> tuple[str, ...]:
    """A data table written as one string ('Alder Alpine' -> ('Alder', 'Alpine'))."""
    return tuple(text.split(sep))


class City(NamedTuple):
    """Where an account sits, and what follows from it (phone prefix, web domain, currency)."""

    name: str
    country: str
    region: str  # east | west: the sales unit that covers it
    phone: str
    postalcode: str
    tld: str
    currency: str
    legal: str  # the usual company suffix there


CITIES = (
    City("Boston", "United States", "east", "+1 617", "02110", "com", "USD", "Inc."),
    City("New York", "United States", "east", "+1 212", "10017", "com", "USD", "Inc."),
    City("Philadelphia", "United States", "east", "+1 215", "19103", "com", "USD", "Inc."),
    City("Atlanta", "United States", "east", "+1 404", "30303", "com", "USD", "LLC"),
    City("Toronto", "Canada", "east", "+1 416", "M5H 2N2", "ca", "USD", "Inc."),
    City("London", "United Kingdom", "east", "+44 20", "EC2V 7HH", "co.uk", "GBP", "Ltd"),
    City("Manchester", "United Kingdom", "east", "+44 161", "M2 5DB", "co.uk", "GBP", "Ltd"),
    City("Dublin", "Ireland", "east", "+353 1", "D02 X285", "ie", "EUR", "Ltd"),
    City("Paris", "France", "east", "+33 1", "75008", "fr", "EUR", "SA"),
    City("Berlin", "Germany", "east", "+49 30", "10117", "de", "EUR", "GmbH"),
    City("Munich", "Germany", "east", "+49 89", "80331", "de", "EUR", "GmbH"),
    City("Amsterdam", "Netherlands", "east", "+31 20", "1017 AB", "nl", "EUR", "B.V."),
    City("Seattle", "United States", "west", "+1 206", "98101", "com", "USD", "Inc."),
    City("Portland", "United States", "west", "+1 503", "97204", "com", "USD", "LLC"),
    City("San Francisco", "United States", "west", "+1 415", "94105", "com", "USD", "Inc."),
    City("Los Angeles", "United States", "west", "+1 213", "90071", "com", "USD", "Inc."),
    City("San Diego", "United States", "west", "+1 619", "92101", "com", "USD", "LLC"),
    City("Denver", "United States", "west", "+1 303", "80202", "com", "USD", "Inc."),
    City("Phoenix", "United States", "west", "+1 602", "85004", "com", "USD", "LLC"),
    City("Vancouver", "Canada", "west", "+1 604", "V6C 3E1", "ca", "USD", "Ltd"),
)
STREETS = (
    "Main Street",
    "Market Street",
    "Harbour Road",
    "Station Road",
    "Commerce Drive",
    "Industrial Parkway",
    "King Street",
    "Park Avenue",
    "Mill Lane",
    "Riverside Way",
    "Oak Boulevard",
    "High Street",
)
COMPANY_STEMS = words(
    "Alder Alpine Aspen Bluewater Brightwater Cascade Cedar Coastal Copperleaf Crescent Eastgate "
    "Evergreen Fairview Foxglove Glacier Granite Harbor Hawthorne Highland Horizon Ironwood Juniper "
    "Keystone Lakeside Lighthouse Maple Meadowbrook Meridian Northgate Oakridge Orchard Pinecrest "
    "Prairie Quarry Redstone Ridgeline Riverbend Rosewood Sagebrush Silverline Skyline Stonebridge "
    "Summit Sunrise Tidewater Timberline Trailhead Vantage Westbrook Whitestone Willow Windmill Bramble "
    "Falcon Kestrel Larkspur Marigold Osprey Sandpiper Thistle"
)
# industrycode -> company-name suffixes that suit it
INDUSTRY_SUFFIXES = {
    1: ("Accounting", "Audit Partners", "Tax Advisors"),
    2: ("Farms", "Agri Supply", "Growers"),
    3: ("Construction", "Builders", "Engineering"),
    4: ("Consulting", "Advisory", "Partners"),
    5: ("Bank", "Capital", "Insurance"),
    6: ("Manufacturing", "Industries", "Machine Works"),
    7: ("Retail", "Stores", "Outfitters"),
    8: ("Systems", "Software", "Technologies"),
    9: ("Logistics", "Freight", "Transport"),
    10: ("Wholesale", "Distributors", "Trading"),
}
FIRST_NAMES = words(
    "Aisha Alex Amelia Ana Ben Björn Carmen Chloé Daniel David Elena Ethan Fatima François Grace Hannah "
    "Hiroshi Isabel Jack James Jana José Julia Karim Laura Liam Lucas Mei Mohammed Nina Noah Olivia "
    "Oscar Priya Rachel Raj Sarah Sofia Thomas Tom Yuki Zoë"
)
LAST_NAMES = words(
    "Adams, Ahmed, Baker, Bauer, Brown, Carter, Clarke, Costa, Dubois, Evans, Fischer, García, Green, "
    "Hall, Hansen, Harris, Hughes, Ivanova, Jensen, Kelly, Kim, Kowalski, Lambert, Lee, Martin, Meyer, "
    "Moreau, Müller, Murphy, Nakamura, Nguyen, O'Brien, Okoye, Olsen, Patel, Rossi, Santos, Schmidt, "
    "Singh, Taylor, Thompson, van Dijk, Walsh, Wang, Wilson, Wright",
    sep=", ",
)
JOB_TITLES = (
    "Chief Executive Officer",
    "Chief Financial Officer",
    "Chief Operating Officer",
    "Head of Procurement",
    "Purchasing Manager",
    "IT Director",
    "IT Manager",
    "Operations Manager",
    "Field Service Manager",
    "Logistics Coordinator",
    "Sales Director",
    "Office Manager",
    "Project Manager",
    "Finance Controller",
    "Warehouse Supervisor",
)

# --- pipeline and service ----------------------------------------------------------------

LEAD_SUBJECTS = (
    "{n} rugged tablets for field crews",
    "Mobile CRM licences for {n} sales reps",
    "Barcode scanning for the warehouse",
    "Request for quote: {n} mobile printers",
    "Demo request from the website",
    "Met at the Logistics World trade show",
    "Replacing paper forms in the field",
    "Asked about offline access for {n} users",
    "Support contract for existing devices",
    "Vehicle mounts for {n} delivery vans",
    "Pilot project for {n} technicians",
    "Referral from a partner: tablet rollout",
)
# leadsourcecode weights: mostly web, referrals and trade shows
LEAD_SOURCES = (1, 2, 3, 4, 5, 6, 7, 8, 8, 8, 7, 7, 3, 9, 10)
OPPORTUNITY_TOPICS = (
    "Field tablet rollout",
    "Mobile CRM licence renewal",
    "Warehouse scanning upgrade",
    "Premium support renewal",
    "Rugged tablet pilot",
    "Data migration project",
    "Expansion to new branch",
    "Printer replacement programme",
    "Onboarding and training",
    "Fleet vehicle mounts",
)
STAGES = (("1-Qualify", 10, 20), ("2-Develop", 30, 50), ("3-Propose", 55, 75), ("4-Close", 80, 90))
CASE_TITLES = (
    "Tablet does not sync after update",
    "Scanner battery drains overnight",
    "Cannot sign in on new device",
    "Printer paper jam on every receipt",
    "Request for replacement docking station",
    "Licence count does not match invoice",
    "Screen cracked after drop",
    "Offline changes not showing on server",
    "Training session needs rescheduling",
    "Vehicle mount rattles while driving",
    "Question about warranty coverage",
    "Slow search on large account lists",
    "Two-factor code not arriving",
    "Invoice sent to the wrong address",
    "Bluetooth pairing fails with scanner",
)
APPOINTMENT_SUBJECTS = (
    "Quarterly business review with {name}",
    "Product demo at {name}",
    "Site visit: {name}",
    "Contract negotiation with {name}",
    "Kick-off meeting: {name}",
    "Lunch with {name}",
)
PHONECALL_SUBJECTS = (
    "Follow up with {name} on the proposal",
    "Discuss renewal with {name}",
    "Check delivery status for {name}",
    "Introductory call: {name}",
    "Call back {name} about pricing",
)
TASK_SUBJECTS = (
    "Send proposal to {name}",
    "Prepare quote for {name}",
    "Update account plan for {name}",
    "Send product brochure to {name}",
    "Schedule training for {name}",
)
EMAIL_SUBJECTS = (
    "Proposal for {name}",
    "Re: Pricing question from {name}",
    "Thank you for meeting us, {name}",
    "Order confirmation for {name}",
    "Welcome to Contoso, {name}",
)
NOTES = (
    ("Account plan", "Budget cycle starts in January; decision by the operations board."),
    ("Meeting notes", "Wants a pilot with ten devices before committing to the full rollout."),
    ("Credit check", "Payment terms approved: 30 days net."),
    ("Competitive situation", "Currently evaluating Fabrikam as well; price is the main concern."),
    ("Key contacts", "Procurement signs, but IT has a veto on device management."),
    ("Visit report", "Toured the warehouse; Wi-Fi coverage is poor in the loading bay."),
)

# --- bulk data ---------------------------------------------------------------------------

BULK_MIX = (("account", 0.4), ("contact", 0.4), ("lead", 0.1), ("opportunity", 0.1))


# --- build_demo ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A record activities, notes and connections can point at."""

    entity: str
    id: str
    label: str
    owner: Owner
    email: str | None = None
    phone: str | None = None
    city: str | None = None


@dataclass
class Demo:
    """What the entity builders share while the demo organisation is being written."""

    session: Session
    model: OrgModel
    hasher: PasswordHasher
    rng: random.Random
    units: dict[str, str] = field(default_factory=dict)  # key -> business unit id
    users: dict[str, str] = field(default_factory=dict)  # username -> systemuser id
    user_unit: dict[str, str] = field(default_factory=dict)  # username -> business unit id
    teams: dict[str, Owner] = field(default_factory=dict)  # team name -> owner
    currencies: dict[str, str] = field(default_factory=dict)  # ISO code -> id
    products: list[tuple[str, Decimal]] = field(default_factory=list)  # (id, list price)
    competitors: list[str] = field(default_factory=list)
    accounts: list[Target] = field(default_factory=list)
    account_city: dict[str, City] = field(default_factory=dict)
    account_domain: dict[str, str] = field(default_factory=dict)
    contacts: list[Target] = field(default_factory=list)
    contacts_of: dict[str, list[Target]] = field(default_factory=dict)  # account id -> its contacts
    leads: list[Target] = field(default_factory=list)
    qualified: dict[str, tuple[Target, str]] = field(default_factory=dict)  # lead id -> (account, topic)
    opportunities: list[Target] = field(default_factory=list)
    customer_of: dict[str, Target] = field(default_factory=dict)  # opportunity id -> its customer
    cases: list[Target] = field(default_factory=list)
    roles: dict[str, str] = field(default_factory=dict)  # connection role name -> id

    def owner(self, username: str) -> Owner:
        """A demo user as a record owner."""
        return Owner(self.users[username], "systemuser", self.user_unit[username])

    def actor(self, username: str) -> Actor:
        """A demo user as the one who writes."""
        return Actor(self.model.org_id, self.users[username], self.user_unit[username])

    def writer(self, owner: Owner | None, by: str) -> Actor:
        """Who writes a record: its owner when that is a user, else the demo user `by`."""
        if owner is not None and owner.type == "systemuser":
            return Actor(self.model.org_id, owner.id, owner.business_unit_id)
        return self.actor(by)

    def add(self, entity_name: str, values: dict[str, Any], owner: Owner | None = None, by: str = "admin") -> str:
        """Insert one record (change-logged) and return its id."""
        entity = self.model.entity(entity_name)
        row = insert_record(self.session, self.model, self.writer(owner, by), entity, values, owner=owner)
        return str(row[entity.primary_id])

    def change(self, target: Target, values: dict[str, Any]) -> None:
        """Update one record (change-logged), written by its owner or the sales manager."""
        entity = self.model.entity(target.entity)
        current = fetch(self.session, self.model, entity, target.id)
        assert current is not None, f"{target.entity} {target.id} vanished"
        update_record(self.session, self.model, self.writer(target.owner, "manager"), entity, current, values)

    def day(self, lo: int, hi: int) -> dt.date:
        """A date `lo`..`hi` days from the reference date (negative = before)."""
        return REFERENCE_DATE + dt.timedelta(days=self.rng.randint(lo, hi))

    def moment(self, lo: int, hi: int) -> dt.datetime:
        """A working-hours moment `lo`..`hi` days from the reference date (naive UTC)."""
        day = self.day(lo, hi)
        return dt.datetime(day.year, day.month, day.day, self.rng.randint(8, 16), self.rng.choice((0, 15, 30, 45)))

    def phone(self, prefix: str) -> str:
        """A phone number with a city's prefix."""
        return f"{prefix} {self.rng.randint(200, 999)} {self.rng.randint(1000, 9999)}"


def ascii_slug(text: str) -> str:
    """Lower-case ASCII letters and digits only ('Björn O'Brien' -> 'bjornobrien')."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in plain.lower() if ch.isalnum())


def build_demo(session: Session, registry: Registry, hasher: PasswordHasher) -> list[dict[str, str]]:
    """Create the demo organisation `contoso` with its users and records; returns the sign-ins.

    Deterministic: the same data on every run apart from ids and timestamps. The caller owns
    the transaction (and commits it).
    """
    model = new_organization(session, registry, DEMO_ORG, DEMO_FRIENDLY_NAME)
    demo = Demo(session, model, hasher, random.Random(DEMO_SEED))
    _structure(demo)
    _currencies(demo)
    _products(demo)
    _competitors(demo)
    _accounts(demo)
    _contacts(demo)
    _primary_contacts(demo)
    _leads(demo)
    _opportunities(demo)
    _cases(demo)
    _activities(demo)
    _notes(demo)
    _connections(demo)
    _site_visits(demo, registry)
    return demo_signins()


def demo_signins() -> list[dict[str, str]]:
    """The demo sign-ins: username, password, role label and business unit name of each user."""
    return [
        {
            "username": u.username,
            "password": DEMO_PASSWORD,
            "role": u.role,
            "business_unit": BUSINESS_UNITS.get(u.unit, DEMO_FRIENDLY_NAME),
        }
        for u in DEMO_USERS
    ]


def _structure(demo: Demo) -> None:
    """Business units, positions, users (with managers) and teams."""
    s, model = demo.session, demo.model
    root = root_business_unit(s, model)
    demo.units["root"] = root
    for key, name in BUSINESS_UNITS.items():
        demo.units[key] = create_business_unit(s, model, name, root)
    positions: dict[str, str] = {}
    for key, name, parent in POSITIONS:
        positions[key] = create_position(s, model, name, positions[parent] if parent else None)
    for u in DEMO_USERS:
        unit = demo.units[u.unit]
        demo.users[u.username] = new_user(
            s,
            model,
            demo.hasher,
            u.username,
            DEMO_PASSWORD,
            u.lastname,
            unit,
            [u.role],
            firstname=u.firstname,
            manager_id=demo.users[u.manager] if u.manager else None,
            position_id=positions[u.position] if u.position else None,
            email=f"{ascii_slug(u.firstname)}.{ascii_slug(u.lastname)}@contoso.example",
        )
        demo.user_unit[u.username] = unit
    for name, unit_key, members in TEAMS:
        unit = demo.units[unit_key]
        team_id = create_team(s, model, name, unit, [demo.users[m] for m in members])
        demo.teams[name] = Owner(team_id, "team", unit)


def _currencies(demo: Demo) -> None:
    """Euro and Pound Sterling beside the base US Dollar."""
    t = demo.model.tables["transactioncurrency"]
    usd = demo.session.execute(
        select(t.c.transactioncurrencyid).where(t.c.organizationid == demo.model.org_id, t.c.isocurrencycode == "USD")
    ).scalar_one()
    demo.currencies["USD"] = str(usd)
    for name, code, symbol, rate in CURRENCIES:
        demo.currencies[code] = demo.add(
            "transactioncurrency",
            {"currencyname": name, "isocurrencycode": code, "currencysymbol": symbol, "exchangerate": rate},
        )


def _products(demo: Demo) -> None:
    """The product catalogue."""
    for number, name, price, description in PRODUCTS:
        values = {"productnumber": number, "name": name, "price": Decimal(price), "description": description}
        demo.products.append((demo.add("product", values), Decimal(price)))


def _competitors(demo: Demo) -> None:
    """Three competitors, each with its offices."""
    for name, website, strengths, weaknesses, addresses in COMPETITORS:
        values = {"name": name, "websiteurl": website, "strengths": strengths, "weaknesses": weaknesses}
        competitor_id = demo.add("competitor", values)
        demo.competitors.append(competitor_id)
        for line1, city, country in addresses:
            demo.add(
                "competitoraddress", {"competitorid": competitor_id, "line1": line1, "city": city, "country": country}
            )


def _account_owner(demo: Demo, region: str) -> Owner:
    """Mostly the region's salespeople; now and then its field team or the sales manager."""
    r = demo.rng.random()
    if r < 0.08:
        return demo.teams["East Field Team" if region == "east" else "West Field Team"]
    if r < 0.16:
        return demo.owner("manager")
    return demo.owner(demo.rng.choice(SALESPEOPLE[region]))


def _account_values(demo: Demo, name: str, domain: str, city: City, industry: int, size: int) -> dict[str, Any]:
    """The columns of one account."""
    rng = demo.rng
    return {
        "name": name,
        "accountnumber": f"ACC-{len(demo.accounts) + 1001}",
        "telephone1": demo.phone(city.phone),
        "emailaddress1": f"info@{domain}",
        "websiteurl": f"https://www.{domain}",
        "address1_line1": f"{rng.randint(1, 480)} {rng.choice(STREETS)}",
        "address1_city": city.name,
        "address1_postalcode": city.postalcode,
        "address1_country": city.country,
        "revenue": Decimal(size * rng.randint(80, 260) * 1000),
        "numberofemployees": size,
        "industrycode": industry,
        "transactioncurrencyid": demo.currencies[city.currency],
        "statecode": 1 if rng.random() < 0.04 else 0,
    }


def _remember_account(demo: Demo, account_id: str, name: str, values: dict[str, Any], city: City, owner: Owner) -> None:
    demo.accounts.append(
        Target("account", account_id, name, owner, values["emailaddress1"], values["telephone1"], city.name)
    )
    demo.account_city[account_id] = city
    demo.account_domain[account_id] = values["websiteurl"].removeprefix("https://www.")


def _accounts(demo: Demo) -> None:
    """44 companies, then 6 subsidiaries of some of them (parent account set)."""
    rng = demo.rng
    for stem in rng.sample(COMPANY_STEMS, 44):
        industry = rng.randint(1, 10)
        base = f"{stem} {rng.choice(INDUSTRY_SUFFIXES[industry])}"
        city = rng.choice(CITIES)
        name = f"{base} {city.legal}" if rng.random() < 0.4 else base
        domain = f"{ascii_slug(base)}.{city.tld}"
        size = rng.choice((12, 25, 40, 60, 85, 120, 250, 400, 750, 1200, 3500, 8000))
        owner = _account_owner(demo, city.region)
        values = _account_values(demo, name, domain, city, industry, size)
        account_id = demo.add("account", values, owner)
        _remember_account(demo, account_id, name, values, city, owner)
    parents = rng.sample(demo.accounts, 6)
    for parent in parents:
        parent_city = demo.account_city[parent.id]
        city = rng.choice([c for c in CITIES if c.region == parent_city.region and c != parent_city])
        name = f"{parent.label} ({city.name})"
        industry = rng.randint(1, 10)
        owner = _account_owner(demo, city.region)
        values = _account_values(demo, name, demo.account_domain[parent.id], city, industry, rng.choice((30, 90, 200)))
        values["parentaccountid"] = parent.id
        account_id = demo.add("account", values, owner)
        _remember_account(demo, account_id, name, values, city, owner)


def _contacts(demo: Demo) -> None:
    """100 people: one at every account, the other 50 spread over them."""
    rng = demo.rng
    employers = list(demo.accounts) + [rng.choice(demo.accounts) for _ in range(100 - len(demo.accounts))]
    employers.sort(key=demo.accounts.index)  # group each account's people together
    for account in employers:
        city = demo.account_city[account.id]
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        email = f"{ascii_slug(first)}.{ascii_slug(last)}@{demo.account_domain[account.id]}"
        born = demo.day(-63 * 365, -24 * 365) if rng.random() < 0.7 else None
        values: dict[str, Any] = {
            "firstname": first,
            "lastname": last,
            "jobtitle": rng.choice(JOB_TITLES),
            "emailaddress1": email,
            "telephone1": demo.phone(city.phone),
            "mobilephone": demo.phone(city.phone) if rng.random() < 0.6 else None,
            "birthdate": born,
            "parentcustomerid": account.id,
            "parentcustomerid__type": "account",
            "address1_city": city.name,
            "transactioncurrencyid": demo.currencies[city.currency],
            "statecode": 1 if rng.random() < 0.03 else 0,
        }
        contact_id = demo.add("contact", values, account.owner)
        contact = Target(
            "contact", contact_id, f"{first} {last}", account.owner, email, values["telephone1"], city.name
        )
        demo.contacts.append(contact)
        demo.contacts_of.setdefault(account.id, []).append(contact)


def _primary_contacts(demo: Demo) -> None:
    """Most accounts name one of their people as the primary contact (an update, change-logged)."""
    for account in demo.accounts:
        if demo.rng.random() < 0.85:
            primary = demo.rng.choice(demo.contacts_of[account.id])
            demo.change(account, {"primarycontactid": primary.id})


def _leads(demo: Demo) -> None:
    """40 leads: mostly open, 7 qualified (from existing accounts), 7 disqualified."""
    rng = demo.rng
    states = [(0, 1)] * 14 + [(0, 2)] * 12 + [(1, 3)] * 7 + [(2, rng.choice((4, 5, 6, 7))) for _ in range(7)]
    rng.shuffle(states)
    spare_stems = [s for s in COMPANY_STEMS if not any(a.label.startswith(s + " ") for a in demo.accounts)]
    for state, status in states:
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        account = rng.choice(demo.accounts) if state == 1 else None
        if account is not None:
            company, city = account.label, demo.account_city[account.id]
        else:
            company = f"{rng.choice(spare_stems)} {rng.choice(INDUSTRY_SUFFIXES[rng.randint(1, 10)])}"
            city = rng.choice(CITIES)
        owner = demo.owner(rng.choice(SALESPEOPLE[city.region]))
        email = f"{ascii_slug(first)}.{ascii_slug(last)}@{ascii_slug(company)}.{city.tld}"
        values: dict[str, Any] = {
            "subject": rng.choice(LEAD_SUBJECTS).format(n=rng.choice((5, 8, 10, 12, 20, 25, 40, 60))),
            "firstname": first,
            "lastname": last,
            "companyname": company,
            "jobtitle": rng.choice(JOB_TITLES),
            "emailaddress1": email,
            "telephone1": demo.phone(city.phone),
            "leadsourcecode": rng.choice(LEAD_SOURCES),
            "estimatedamount": Decimal(rng.randrange(5, 250) * 1000),
            "parentaccountid": account.id if account else None,
            "parentcontactid": rng.choice(demo.contacts_of[account.id]).id if account else None,
            "transactioncurrencyid": demo.currencies[city.currency],
            "statecode": state,
            "statuscode": status,
        }
        lead_id = demo.add("lead", values, owner)
        demo.leads.append(Target("lead", lead_id, company, owner, email, values["telephone1"], city.name))
        if account is not None:
            demo.qualified[lead_id] = (account, values["subject"])


def _opportunity_lines(demo: Demo, opportunity_id: str, owner: Owner) -> Decimal:
    """1-3 product lines on an opportunity; returns their total."""
    rng = demo.rng
    total = Decimal(0)
    for product_id, price in rng.sample(demo.products, rng.randint(1, 3)):
        quantity = Decimal(rng.choice((1, 2, 3, 5, 10, 12, 20, 25, 50)) if price < 1000 else rng.randint(1, 4))
        unit_price = (price * Decimal(rng.choice(("1", "0.95", "0.9")))).quantize(CENT)
        values = {"opportunityid": opportunity_id, "productid": product_id, "quantity": quantity}
        values["priceperunit"] = unit_price
        demo.add("opportunityproduct", values, owner)
        total += quantity * unit_price
    return total.quantize(CENT)


def _opportunities(demo: Demo) -> None:
    """30 opportunities (7 from qualified leads): 20 open, 6 won, 4 lost; each with products."""
    rng = demo.rng
    outcomes = ["open"] * 20 + ["won"] * 6 + ["lost"] * 4
    rng.shuffle(outcomes)
    qualified = [lead for lead in demo.leads if lead.id in demo.qualified]
    for n, outcome in enumerate(outcomes):
        lead = qualified[n] if n < len(qualified) else None
        if lead is not None:
            customer, topic = demo.qualified[lead.id]  # qualifying a lead names the opportunity after it
        else:
            customer = rng.choice(demo.contacts) if rng.random() < 0.17 else rng.choice(demo.accounts)
            topic = f"{rng.choice(OPPORTUNITY_TOPICS)} - {customer.label}"
        owner = demo.teams["Key Accounts"] if rng.random() < 0.1 else customer.owner
        stage, lo, hi = rng.choice(STAGES) if outcome == "open" else STAGES[-1]
        close = demo.day(7, 150) if outcome == "open" else demo.day(-200, -5)
        values: dict[str, Any] = {
            "name": topic,
            "customerid": customer.id,
            "customerid__type": customer.entity,
            "estimatedclosedate": close,
            "closeprobability": rng.randint(lo, hi),
            "stepname": stage,
            "originatingleadid": lead.id if lead else None,
            "description": f"{customer.label} in {customer.city}.",
        }
        if rng.random() < 0.1:
            values["statuscode"] = 2  # on hold
        opportunity_id = demo.add("opportunity", values, owner, by="manager")
        total = _opportunity_lines(demo, opportunity_id, owner)
        closing: dict[str, Any] = {"estimatedvalue": total}
        if outcome == "won":
            closing |= {"statecode": 1, "statuscode": 3, "closeprobability": 100, "actualclosedate": close}
            closing["actualvalue"] = (total * Decimal(rng.choice(("1", "0.97", "0.92")))).quantize(CENT)
        elif outcome == "lost":
            closing |= {"statecode": 2, "statuscode": rng.choice((4, 5)), "closeprobability": 0}
            closing["actualclosedate"] = close
            closing["actualvalue"] = Decimal(0)
        opportunity = Target(
            "opportunity", opportunity_id, customer.label, owner, customer.email, customer.phone, customer.city
        )
        demo.change(opportunity, closing)
        demo.opportunities.append(opportunity)
        demo.customer_of[opportunity_id] = customer
        if lead is not None:
            demo.change(lead, {"qualifyingopportunityid": opportunity_id})


def _cases(demo: Demo) -> None:
    """15 cases handled by support: 9 active, 5 resolved, 1 cancelled."""
    rng = demo.rng
    states = [(0, 1)] * 5 + [(0, 2)] * 2 + [(0, 3)] * 2 + [(1, 5)] * 5 + [(2, 6)]
    rng.shuffle(states)
    for title, (state, status) in zip(CASE_TITLES, states, strict=True):
        customer = rng.choice(demo.contacts) if rng.random() < 0.2 else rng.choice(demo.accounts)
        values = {
            "title": title,
            "customerid": customer.id,
            "customerid__type": customer.entity,
            "description": f"Reported by {customer.label} via {rng.choice(('phone', 'email', 'the web form'))}.",
            "prioritycode": rng.choice((1, 2, 2, 2, 3)),
            "caseorigincode": rng.choice((1, 1, 2, 2, 3, 4)),
            "statecode": state,
            "statuscode": status,
        }
        case_id = demo.add("incident", values, demo.owner("support"))
        demo.cases.append(
            Target("incident", case_id, title, demo.owner("support"), customer.email, customer.phone, customer.city)
        )


def _user_email(demo: Demo, owner: Owner) -> str:
    """The mailbox behind an owner (a team writes from the shared sales mailbox)."""
    for u in DEMO_USERS:
        if demo.users[u.username] == owner.id:
            return f"{ascii_slug(u.firstname)}.{ascii_slug(u.lastname)}@contoso.example"
    return "sales@contoso.example"


def _regarding(demo: Demo) -> Target:
    """A record to hang an activity on: accounts and contacts most, then opportunities and leads."""
    kind = demo.rng.choice(("account", "account", "contact", "contact", "opportunity", "opportunity", "lead"))
    pool = {"account": demo.accounts, "contact": demo.contacts, "opportunity": demo.opportunities}
    return demo.rng.choice(pool.get(kind, demo.leads))


def _activity_values(demo: Demo, target: Target, subjects: Sequence[str], done: bool) -> dict[str, Any]:
    """What every activity has: subject, regarding, schedule, priority and state."""
    rng = demo.rng
    start = demo.moment(-90, -1) if done else demo.moment(1, 45)
    end = start + dt.timedelta(minutes=rng.choice((30, 60, 90)))
    values: dict[str, Any] = {
        "subject": rng.choice(subjects).format(name=target.label),
        "regardingobjectid": target.id,
        "regardingobjectid__type": target.entity,
        "scheduledstart": start,
        "scheduledend": end,
        "prioritycode": rng.choice((0, 1, 1, 1, 2)),
    }
    if done:
        values |= {"statecode": 1, "statuscode": 2, "actualend": end}
    elif rng.random() < 0.08:
        values |= {"statecode": 2, "statuscode": 3}
    return values


def _activities(demo: Demo) -> None:
    """Appointments, phone calls and tasks (half done), 3 support calls on cases, 10 emails."""
    rng = demo.rng
    kinds: list[tuple[str, Sequence[str]]] = [("appointment", APPOINTMENT_SUBJECTS)] * 14
    kinds += [("phonecall", PHONECALL_SUBJECTS)] * 14 + [("task", TASK_SUBJECTS)] * 12
    for entity, subjects in kinds:
        target = _regarding(demo)
        done = rng.random() < 0.5
        values = _activity_values(demo, target, subjects, done)
        if entity == "appointment":
            values["location"] = target.city if target.city and rng.random() < 0.7 else "Online meeting"
        elif entity == "phonecall":
            values |= {"phonenumber": target.phone, "directioncode": 1 if rng.random() < 0.8 else 0}
        else:
            values["percentcomplete"] = 100 if done else rng.choice((0, 0, 25, 50))
        demo.add(entity, values, target.owner, by="manager")
    for case in rng.sample(demo.cases, 3):
        values = _activity_values(demo, case, ("Call back about: {name}",), rng.random() < 0.5)
        values |= {"phonenumber": case.phone, "directioncode": 1}
        demo.add("phonecall", values, case.owner, by="support")
    for _ in range(10):
        target = _regarding(demo)
        values = _activity_values(demo, target, EMAIL_SUBJECTS, done=True)
        ours, theirs = _user_email(demo, target.owner), target.email or "reception@example.com"
        outgoing = rng.random() < 0.7
        values |= {
            "sender": ours if outgoing else theirs,
            "torecipients": theirs if outgoing else ours,
            "directioncode": 1 if outgoing else 0,
            "description": "Please find the details below. Kind regards",
        }
        demo.add("email", values, target.owner, by="manager")


def _notes(demo: Demo) -> None:
    """Notes on six accounts; the visit report carries a small text attachment."""
    for account, (subject, text) in zip(demo.rng.sample(demo.accounts, len(NOTES)), NOTES, strict=True):
        values: dict[str, Any] = {
            "subject": subject,
            "notetext": text,
            "objectid": account.id,
            "objectid__type": "account",
        }
        if subject == "Visit report":
            body = f"Visit report: {account.label}\n\n{text}\n".encode()
            values |= {
                "filename": "visit-report.txt",
                "mimetype": "text/plain",
                "documentbody": base64.b64encode(body).decode(),
            }
        demo.add("annotation", values, account.owner, by="manager")


def _connections(demo: Demo) -> None:
    """Connection roles; who decides on some opportunities; partner and competitor links."""
    rng = demo.rng
    for name, category, description in CONNECTION_ROLES:
        demo.roles[name] = demo.add("connectionrole", {"name": name, "category": category, "description": description})
    with_people = [o for o in demo.opportunities if demo.customer_of[o.id].entity == "account"]
    for opportunity in rng.sample(with_people, 4):
        person = rng.choice(demo.contacts_of[demo.customer_of[opportunity.id].id])
        role = rng.choice(("Decision Maker", "Influencer"))
        values = {
            "name": person.label,
            "record1id": opportunity.id,
            "record1id__type": "opportunity",
            "record2id": person.id,
            "record2id__type": "contact",
            "record2roleid": demo.roles[role],
        }
        demo.add("connection", values, opportunity.owner, by="manager")
    for first, second in (rng.sample(demo.accounts, 2), rng.sample(demo.accounts, 2)):
        values = {
            "name": second.label,
            "record1id": first.id,
            "record1id__type": "account",
            "record2id": second.id,
            "record2id__type": "account",
            "record1roleid": demo.roles["Partner"],
            "record2roleid": demo.roles["Partner"],
            "description": "Joint bids on public tenders.",
        }
        demo.add("connection", values, first.owner, by="manager")
    incumbent = rng.choice(demo.accounts)
    values = {
        "name": COMPETITORS[0][0],
        "record1id": incumbent.id,
        "record1id__type": "account",
        "record2id": demo.competitors[0],
        "record2id__type": "competitor",
        "description": "Current supplier; contract ends next spring.",
    }
    demo.add("connection", values, incumbent.owner, by="manager")


# --- load_bulk -----------------------------------------------------------------------------

OwnerCols = tuple[str | None, str | None, str | None]
NO_OWNER: OwnerCols = (None, None, None)


@dataclass
class Bulk:
    """State shared by the bulk generators: the generator, owners, and what was made so far."""

    rng: random.Random
    owners: list[OwnerCols]
    token: str  # makes this load's account numbers unique
    accounts: list[tuple[str, OwnerCols, str]] = field(default_factory=list)  # (id, owner, name)
    slugs: dict[str, str] = field(default_factory=dict)

    def owner(self) -> OwnerCols:
        """Any enabled user of the organisation (or nobody when it has none)."""
        return self.owners[int(self.rng.random() * len(self.owners))] if self.owners else NO_OWNER

    def account(self) -> tuple[str, OwnerCols, str] | None:
        """One of the accounts this load made (None if it made none)."""
        return self.accounts[int(self.rng.random() * len(self.accounts))] if self.accounts else None

    def slug(self, text: str) -> str:
        """ascii_slug, remembered (the same few names come up again and again)."""
        found = self.slugs.get(text)
        if found is None:
            found = self.slugs[text] = ascii_slug(text)
        return found

    def phone(self, city: City) -> str:
        """A phone number in `city`."""
        r = self.rng.random()
        return f"{city.phone} {200 + int(r * 800)} {1000 + int(r * 1e7) % 9000}"


def _bulk_account(bulk: Bulk, i: int) -> tuple[dict[str, Any], OwnerCols]:
    rng = bulk.rng
    industry = 1 + int(rng.random() * 10)
    base = f"{rng.choice(COMPANY_STEMS)} {rng.choice(INDUSTRY_SUFFIXES[industry])}"
    city = rng.choice(CITIES)
    size = rng.choice((12, 25, 40, 60, 85, 120, 250, 400, 750, 1200, 3500))
    domain = f"{bulk.slug(base)}{i + 1}.{city.tld}"
    values = {
        "name": f"{base} {i + 1}",
        "accountnumber": f"B{bulk.token}-{i + 1:07d}",
        "telephone1": bulk.phone(city),
        "emailaddress1": f"info@{domain}",
        "websiteurl": f"https://www.{domain}",
        "address1_city": city.name,
        "address1_country": city.country,
        "revenue": Decimal(size * (80 + int(rng.random() * 180)) * 1000),
        "numberofemployees": size,
        "industrycode": industry,
        "statecode": 0,
        "statuscode": 1,
    }
    return values, bulk.owner()


def _bulk_contact(bulk: Bulk, i: int) -> tuple[dict[str, Any], OwnerCols]:
    rng = bulk.rng
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    city = rng.choice(CITIES)
    values: dict[str, Any] = {
        "firstname": first,
        "lastname": last,
        "fullname": f"{first} {last}",
        "jobtitle": rng.choice(JOB_TITLES),
        "emailaddress1": f"{bulk.slug(first)}.{bulk.slug(last)}{i + 1}@example.{city.tld}",
        "telephone1": bulk.phone(city),
        "address1_city": city.name,
        "statecode": 0,
        "statuscode": 1,
    }
    account = bulk.account()
    if account is None:
        return values, bulk.owner()
    values["parentcustomerid"], values["parentcustomerid__type"] = account[0], "account"
    return values, account[1]


def _bulk_lead(bulk: Bulk, i: int) -> tuple[dict[str, Any], OwnerCols]:
    rng = bulk.rng
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    company = f"{rng.choice(COMPANY_STEMS)} {rng.choice(INDUSTRY_SUFFIXES[1 + int(rng.random() * 10)])}"
    values = {
        "subject": rng.choice(LEAD_SUBJECTS).format(n=rng.choice((5, 10, 20, 50))),
        "firstname": first,
        "lastname": last,
        "fullname": f"{first} {last}",
        "companyname": company,
        "emailaddress1": f"{bulk.slug(first)}.{bulk.slug(last)}{i + 1}@{bulk.slug(company)}.example",
        "leadsourcecode": rng.choice(LEAD_SOURCES),
        "estimatedamount": Decimal((5 + int(rng.random() * 245)) * 1000),
        "statecode": 0,
        "statuscode": 1 + int(rng.random() * 2),
    }
    return values, bulk.owner()


def _bulk_opportunity(bulk: Bulk, i: int) -> tuple[dict[str, Any], OwnerCols]:
    rng = bulk.rng
    stage, lo, hi = rng.choice(STAGES)
    account = bulk.account()
    values: dict[str, Any] = {
        "name": f"{rng.choice(OPPORTUNITY_TOPICS)} - {account[2] if account else f'Prospect {i + 1}'}",
        "estimatedvalue": Decimal((2 + int(rng.random() * 300)) * 500),
        "estimatedclosedate": REFERENCE_DATE + dt.timedelta(days=int(rng.random() * 180)),
        "closeprobability": lo + int(rng.random() * (hi - lo + 1)),
        "stepname": stage,
        "statecode": 0,
        "statuscode": 1,
    }
    if account is None:
        return values, bulk.owner()
    values["customerid"], values["customerid__type"] = account[0], "account"
    return values, account[1]


BULK_MAKERS: dict[str, Callable[[Bulk, int], tuple[dict[str, Any], OwnerCols]]] = {
    "account": _bulk_account,
    "contact": _bulk_contact,
    "lead": _bulk_lead,
    "opportunity": _bulk_opportunity,
}


def bulk_counts(records: int, mix: Sequence[tuple[str, float]] = BULK_MIX) -> dict[str, int]:
    """How `records` splits over the entities of `mix` (the last one takes the rounding)."""
    unknown = [name for name, _ in mix if name not in BULK_MAKERS]
    if unknown or not mix:
        raise ValueError(f"bulk loads make {', '.join(BULK_MAKERS)}; not {unknown}")
    counts = {name: int(records * share) for name, share in mix[:-1]}
    counts[mix[-1][0]] = records - sum(counts.values())
    return counts


def _enabled_users(session: Session, model: OrgModel) -> list[OwnerCols]:
    t = model.tables["systemuser"]
    rows = session.execute(
        select(t.c.systemuserid, t.c.businessunitid)
        .where(t.c.organizationid == model.org_id, or_(t.c.isdisabled.is_(None), t.c.isdisabled.is_(False)))
        .order_by(t.c.username)
    ).all()
    return [(str(r.systemuserid), "systemuser", str(r.businessunitid)) for r in rows]


def _bulk_insert(session: Session, model: OrgModel, bulk: Bulk, entity_name: str, count: int, bar: tqdm[Any]) -> None:
    """Insert `count` generated records of one entity, chunk by chunk, each with its change-log row."""
    entity = model.entity(entity_name)
    table = model.table(entity)
    make = BULK_MAKERS[entity_name]
    org_id, pk = model.org_id, entity.primary_id
    for start in range(0, count, BULK_CHUNK):
        made = [make(bulk, i) for i in range(start, min(start + BULK_CHUNK, count))]
        ids = [str(uuid.uuid4()) for _ in made]
        now = utcnow()
        # Every row of a chunk has the same columns set (never None), as insert_record would log them.
        changed = sorted(k for k, v in made[0][0].items() if v is not None and not k.endswith("__type"))
        log = [
            {
                "organizationid": org_id,
                "entity": entity_name,
                "recordid": record_id,
                "operation": "create",
                "changedfields": changed,
                "ownerid": owner[0],
                "ownerid__type": owner[1],
                "owningbusinessunit": owner[2],
                "changedon": now,
                "changedby": None,
            }
            for record_id, (_, owner) in zip(ids, made, strict=True)
        ]
        numbers = reserve_changes(session, log)
        rows = [
            {
                **values,
                "organizationid": org_id,
                pk: record_id,
                "ownerid": owner[0],
                "ownerid__type": owner[1],
                "owningbusinessunit": owner[2],
                "createdon": now,
                "modifiedon": now,
                "createdby": None,
                "modifiedby": None,
                "versionnumber": number,
            }
            for record_id, (values, owner), number in zip(ids, made, numbers, strict=True)
        ]
        session.execute(insert(table), rows)
        if entity_name == "account":
            bulk.accounts.extend((r, owner, v["name"]) for r, (v, owner) in zip(ids, made, strict=True))
        bar.update(len(rows))


def load_bulk(
    session: Session,
    registry: Registry,
    org_name: str,
    records: int,
    progress: bool = True,
    mix: Sequence[tuple[str, float]] = BULK_MIX,
) -> dict[str, int]:
    """Add `records` generated records to an organisation, fast; returns the count per entity.

    About 40% accounts, 40% contacts (at the new accounts), 10% leads and 10% opportunities
    (for the new accounts), owned by the organisation's enabled users; `mix` changes the split
    (contacts and opportunities then go to the accounts loaded in the same call, if any). Rows go in with Core
    executemany in chunks of BULK_CHUNK; each record gets a change-log row and its change
    number as versionnumber. The caller owns the transaction (and commits it).
    """
    if records < 0:
        raise ValueError("records must be zero or more")
    model = registry.model(session, org_id_by_name(session, org_name))
    bulk = Bulk(random.Random(DEMO_SEED), _enabled_users(session, model), uuid.uuid4().hex[:6])
    counts = bulk_counts(records, mix)
    with tqdm(total=records, unit="rec", desc=f"Loading {org_name}", file=sys.stderr, disable=not progress) as bar:
        for entity_name, count in counts.items():
            _bulk_insert(session, model, bulk, entity_name, count, bar)
    return counts


# --- a custom entity -------------------------------------------------------------------------

# "Site Visit": a custom entity linked to accounts, added the way an administrator adds one
# (`outpost add-entity` with this definition, or the console's Entities page), so that the demo
# shows the reference's "Custom Entity" among the offline entities.
MINE = "Microsoft.Dynamics.CRM.EqualUserId(PropertyName='ownerid')"
SITE_VISIT: dict[str, Any] = {
    "logical_name": "new_sitevisit",
    "display_name": "Site Visit",
    "display_collection_name": "Site Visits",
    "entity_set": "new_sitevisits",
    "primary_name": "new_name",
    "ownership": "user",
    "attributes": [
        {"logical_name": "new_name", "type": "string", "display_name": "Subject", "required": True, "max_length": 200},
        {"logical_name": "new_accountid", "type": "lookup", "display_name": "Account", "targets": ["account"]},
        {"logical_name": "new_visitdate", "type": "date", "display_name": "Visit Date", "required": True},
        {
            "logical_name": "new_purpose",
            "type": "optionset",
            "display_name": "Purpose",
            "options": [
                {"value": 1, "label": "Sales Call"},
                {"value": 2, "label": "Installation"},
                {"value": 3, "label": "Maintenance"},
                {"value": 4, "label": "Training"},
            ],
        },
        {"logical_name": "new_durationminutes", "type": "integer", "display_name": "Duration (minutes)"},
        {"logical_name": "new_sitephone", "type": "string", "display_name": "Site Phone", "format": "phone"},
        {"logical_name": "new_followup", "type": "boolean", "display_name": "Follow-up Needed"},
        {"logical_name": "new_notes", "type": "memo", "display_name": "Notes", "max_length": 10000},
    ],
    "views": [
        {
            "name": "My Site Visits",
            "columns": ["new_name", "new_accountid", "new_visitdate", "new_purpose"],
            "filter": MINE,
            "orderby": "new_visitdate desc",
        },
        {
            "name": "All Site Visits",
            "columns": ["new_name", "new_accountid", "new_visitdate", "new_purpose"],
            "orderby": "new_visitdate desc",
        },
        {
            "name": "Follow-up Needed",
            "columns": ["new_name", "new_accountid", "new_visitdate"],
            "filter": "new_followup eq true",
            "orderby": "new_visitdate asc",
        },
    ],
    "form": [
        {
            "name": "Visit",
            "fields": ["new_name", "new_accountid", "new_visitdate", "new_purpose", "new_durationminutes"],
        },
        {"name": "On Site", "fields": ["new_sitephone", "new_followup", "new_notes"]},
    ],
    "quick_find": ["new_name"],
    "offline_commands": ["create", "read", "update", "delete"],
}
SITE_VISIT_GRANTS = {
    "Salesperson": {**dict.fromkeys(PRIVILEGES, USER), "read": BU},
    "Sales Manager": {**dict.fromkeys(PRIVILEGES, BU), "read": PARENTCHILD},
    "Customer Service Representative": {"read": ORG},
}
SITE_VISIT_TOPICS = ("Quarterly review", "Product demo", "Install check", "Service visit", "Training session")


def _site_visits(demo: Demo, registry: Registry) -> None:
    """The Site Visit entity (customization path of `outpost add-entity`), its privileges for the
    shipped roles, and two visits at each of the first 30 accounts, owned by the account's owner."""
    from webapp.crm.customizations import add_entity

    add_entity(demo.session, registry, demo.model, SITE_VISIT)
    demo.model = registry.model(demo.session, demo.model.org_id)
    for name, privileges in SITE_VISIT_GRANTS.items():
        rid = role_id(demo.session, demo.model, name)
        for privilege, depth in privileges.items():
            grant(demo.session, demo.model, rid, "new_sitevisit", privilege, depth)
    rng = random.Random(DEMO_SEED + 1)  # its own sequence: the rest of the demo stays as it was
    for account in demo.accounts[:30]:
        for _ in range(2):
            topic = rng.choice(SITE_VISIT_TOPICS)
            values = {
                "new_name": f"{topic} at {account.label}",
                "new_accountid": account.id,
                "new_visitdate": REFERENCE_DATE + dt.timedelta(days=rng.randint(-60, 30)),
                "new_purpose": rng.randint(1, 4),
                "new_durationminutes": rng.choice((30, 45, 60, 90, 120)),
                "new_sitephone": account.phone,
                "new_followup": rng.random() < 0.3,
                "new_notes": f"Met the team at {account.label} in {account.city}.",
            }
            owner = account.owner if account.owner.type == "systemuser" else demo.owner("manager")
            demo.add("new_sitevisit", values, owner)
