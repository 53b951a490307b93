"""The system entities: the same in every organisation (DESIGN.md §2).

Each entity is written once here; its table, validation schema, API, metadata document and
offline behaviour are derived from this description.
"""

from __future__ import annotations

from webapp.crm.metadata import Attribute, Entity, Option, View

CRUD = ("create", "read", "update", "delete")
# The "My …" views' owner condition, as the reference's (FetchXML `eq-userid`).
MINE = "Microsoft.Dynamics.CRM.EqualUserId(PropertyName='ownerid')"

# --- attribute shorthands -------------------------------------------------------------


def pk(name: str, label: str) -> Attribute:
    """The primary id (a client may mint it on create, never change it)."""
    return Attribute(name, "uniqueidentifier", label)


def text(name: str, label: str, max_length: int = 100, required: bool = False, format_: str | None = None) -> Attribute:
    """A single-line string; `format_` (email, phone, url) picks the phone's keyboard."""
    return Attribute(name, "string", label, required=required, max_length=max_length, format=format_)


def memo(name: str, label: str, max_length: int = 4000) -> Attribute:
    """A multi-line string."""
    return Attribute(name, "memo", label, max_length=max_length)


def integer(name: str, label: str, lo: float | None = None, hi: float | None = None) -> Attribute:
    """A whole number."""
    return Attribute(name, "integer", label, min_value=lo, max_value=hi)


def decimal(name: str, label: str, lo: float | None = None, hi: float | None = None) -> Attribute:
    """A decimal number."""
    return Attribute(name, "decimal", label, min_value=lo, max_value=hi)


def money(name: str, label: str, read_only: bool = False) -> Attribute:
    """An amount of money, held to what its NUMERIC(19,4) column stores (webapp/crm/ruledata.py)."""
    return Attribute(name, "money", label, read_only=read_only)


def boolean(name: str, label: str) -> Attribute:
    """True or false."""
    return Attribute(name, "boolean", label)


def date(name: str, label: str) -> Attribute:
    """A calendar date with no time."""
    return Attribute(name, "date", label)


def when(name: str, label: str) -> Attribute:
    """A moment in UTC."""
    return Attribute(name, "datetime", label)


def choice(name: str, label: str, *options: tuple[int, str], required: bool = False) -> Attribute:
    """An option set."""
    return Attribute(name, "optionset", label, required=required, options=tuple(Option(v, t) for v, t in options))


def lookup(name: str, label: str, *targets: str, required: bool = False, cascade: str = "clear") -> Attribute:
    """A reference to a record of one of `targets`; `cascade="delete"`: a parental one (the
    record goes with its parent)."""
    return Attribute(name, "lookup", label, required=required, targets=targets, cascade=cascade)


def derived(
    name: str,
    label: str,
    type_: str = "string",
    max_length: int | None = 200,
    formula: tuple[str, tuple[str, ...]] | None = None,
    autonumber: tuple[str, int] | None = None,
) -> Attribute:
    """A value the server computes: by a `formula` both sides interpret (fullname, extendedamount),
    or by the server alone (ticketnumber, activitytypecode)."""
    length = max_length if type_ in ("string", "memo") else None
    return Attribute(name, type_, label, max_length=length, read_only=True, formula=formula, autonumber=autonumber)


FULL_NAME = ("join", ("firstname", "lastname"))


def state(*states: tuple[int, str, tuple[int, ...]], via: dict[int, str] | None = None) -> Attribute:
    """statecode with its states, each with the states a plain update may move it to.

    A move not listed (a lead to Qualified, an opportunity to Won) happens only through its
    command, which checks what the move needs (PROTOCOL.md §4); `via` names, per state, the
    command a refused move out of it should point the user to.
    """
    options = tuple(Option(v, t, None, n, (via or {}).get(v)) for v, t, n in states)
    return Attribute("statecode", "optionset", "Status", options=options)


def status(*statuses: tuple[int, str, int]) -> Attribute:
    """statuscode: each status belongs to one state."""
    return Attribute("statuscode", "optionset", "Status Reason", options=tuple(Option(v, t, s) for v, t, s in statuses))


def view(entity: str, n: int, name: str, columns: str, filter_: str = "", orderby: str = "") -> View:
    """A system view; columns are space-separated ('a.b' = attribute b of lookup a's target)."""
    return View(f"{entity}-{n}", name, tuple(columns.split()), filter_, orderby)


ACTIVE_STATES = (state((0, "Active", (1,)), (1, "Inactive", (0,))), status((1, "Active", 0), (2, "Inactive", 1)))
REGARDING = ("account", "contact", "lead", "opportunity", "incident")
ACTIVITY_STATES = (
    state((0, "Open", (1, 2)), (1, "Completed", ()), (2, "Canceled", ())),
    status((1, "Open", 0), (2, "Completed", 1), (3, "Canceled", 2)),
)
PRIORITY = choice("prioritycode", "Priority", (0, "Low"), (1, "Normal"), (2, "High"))


def activity_common() -> tuple[Attribute, ...]:
    """The fields every activity shares (activitypointer unions them)."""
    return (
        pk("activityid", "Activity"),
        text("subject", "Subject", 200, required=True),
        memo("description", "Description"),
        when("scheduledstart", "Start Time"),
        when("scheduledend", "Due"),
        when("actualend", "Actual End"),
        lookup("regardingobjectid", "Regarding", *REGARDING),
        PRIORITY,
        derived("activitytypecode", "Activity Type", max_length=64),
        *ACTIVITY_STATES,
    )


def activity(
    name: str, label: str, plural: str, extra: tuple[Attribute, ...], offline: tuple[str, ...], columns: str
) -> Entity:
    """One activity type: the common activity fields plus its own."""
    return Entity(
        logical_name=name,
        display_name=label,
        display_collection_name=plural,
        entity_set=f"{name}s",
        primary_id="activityid",
        primary_name="subject",
        ownership="user",
        attributes=activity_common() + extra,
        views=(
            view(name, 1, f"My Open {plural}", columns, f"statecode eq 0 and {MINE}", "scheduledend asc"),
            view(name, 2, f"All {plural}", columns, "", "modifiedon desc"),
            view(name, 3, f"Completed {plural}", columns, "statecode eq 1", "actualend desc"),
        ),
        quick_find=("subject",),
        offline_commands=offline,
        activity=True,
    )


SYSTEM_ENTITIES: tuple[Entity, ...] = (
    Entity(
        "businessunit",
        "Business Unit",
        "Business Units",
        "businessunits",
        "businessunitid",
        "name",
        "organization",
        (
            pk("businessunitid", "Business Unit"),
            text("name", "Name", 160, required=True),
            lookup("parentbusinessunitid", "Parent Business", "businessunit"),
            boolean("isdisabled", "Disabled"),  # its users (and those of units below) cannot sign in
        ),
        views=(
            view(
                "businessunit",
                1,
                "Active Business Units",
                "name parentbusinessunitid",
                "isdisabled eq false",
                "name asc",
            ),
            view("businessunit", 2, "All Business Units", "name", "", "modifiedon desc"),
        ),
        quick_find=("name",),
        api_writable=False,
    ),
    Entity(
        "systemuser",
        "User",
        "Users",
        "systemusers",
        "systemuserid",
        "fullname",
        "organization",
        (
            pk("systemuserid", "User"),
            text("username", "User Name", 100, required=True),
            text("firstname", "First Name", 64),
            text("lastname", "Last Name", 64, required=True),
            derived("fullname", "Full Name", formula=FULL_NAME),
            text("internalemailaddress", "Primary Email", 100, format_="email"),
            lookup("businessunitid", "Business Unit", "businessunit", required=True),
            lookup("parentsystemuserid", "Manager", "systemuser"),
            lookup("positionid", "Position", "position"),
            boolean("isdisabled", "Disabled"),
        ),
        views=(
            view(
                "systemuser",
                1,
                "Enabled Users",
                "fullname businessunitid positionid",
                "isdisabled eq false",
                "fullname asc",
            ),
            view("systemuser", 2, "All Users", "fullname username", "", "fullname asc"),
        ),
        quick_find=("fullname", "username"),
        offline_commands=("read",),
        api_writable=False,
    ),
    Entity(
        "team",
        "Team",
        "Teams",
        "teams",
        "teamid",
        "name",
        "organization",
        (
            pk("teamid", "Team"),
            text("name", "Team Name", 160, required=True),
            lookup("businessunitid", "Business Unit", "businessunit", required=True),
            memo("description", "Description"),
        ),
        views=(
            view("team", 1, "All Teams", "name businessunitid", "", "name asc"),
            view("team", 2, "Recently Changed Teams", "name", "", "modifiedon desc"),
        ),
        quick_find=("name",),
        offline_commands=("read",),
        api_writable=False,
    ),
    Entity(
        "position",
        "Position",
        "Positions",
        "positions",
        "positionid",
        "name",
        "organization",
        (
            pk("positionid", "Position"),
            text("name", "Name", 100, required=True),
            lookup("parentpositionid", "Parent Position", "position"),
            memo("description", "Description"),
        ),
        views=(
            view("position", 1, "All Positions", "name parentpositionid", "", "name asc"),
            view("position", 2, "Recently Changed Positions", "name", "", "modifiedon desc"),
        ),
        quick_find=("name",),
        offline_commands=CRUD,
    ),
    Entity(
        "transactioncurrency",
        "Currency",
        "Currencies",
        "transactioncurrencies",
        "transactioncurrencyid",
        "currencyname",
        "organization",
        (
            pk("transactioncurrencyid", "Currency"),
            text("currencyname", "Currency Name", 100, required=True),
            text("isocurrencycode", "Currency Code", 5, required=True),
            text("currencysymbol", "Currency Symbol", 10, required=True),
            decimal("exchangerate", "Exchange Rate", 0.0000000001, 100000000000),
        ),
        views=(
            view(
                "transactioncurrency",
                1,
                "Active Currencies",
                "currencyname isocurrencycode currencysymbol",
                "",
                "currencyname asc",
            ),
            view("transactioncurrency", 2, "All Currencies", "currencyname exchangerate", "", "isocurrencycode asc"),
        ),
        quick_find=("currencyname", "isocurrencycode"),
        offline_commands=CRUD,
    ),
    Entity(
        "account",
        "Account",
        "Accounts",
        "accounts",
        "accountid",
        "name",
        "user",
        (
            pk("accountid", "Account"),
            text("name", "Account Name", 160, required=True),
            text("accountnumber", "Account Number", 20),
            text("telephone1", "Main Phone", 50, format_="phone"),
            text("emailaddress1", "Email", 100, format_="email"),
            text("websiteurl", "Website", 200, format_="url"),
            text("address1_line1", "Street 1", 250),
            text("address1_city", "City", 80),
            text("address1_postalcode", "ZIP/Postal Code", 20),
            text("address1_country", "Country/Region", 80),
            money("revenue", "Annual Revenue"),
            integer("numberofemployees", "Number of Employees", 0, 1_000_000_000),
            choice(
                "industrycode",
                "Industry",
                (1, "Accounting"),
                (2, "Agriculture"),
                (3, "Construction"),
                (4, "Consulting"),
                (5, "Financial Services"),
                (6, "Manufacturing"),
                (7, "Retail"),
                (8, "Technology"),
                (9, "Transportation"),
                (10, "Wholesale"),
            ),
            lookup("primarycontactid", "Primary Contact", "contact"),
            lookup("parentaccountid", "Parent Account", "account"),
            lookup("transactioncurrencyid", "Currency", "transactioncurrency"),
            memo("description", "Description"),
            *ACTIVE_STATES,
        ),
        views=(
            view(
                "account",
                1,
                "My Active Accounts",
                "name address1_city telephone1 primarycontactid",
                f"statecode eq 0 and {MINE}",
                "name asc",
            ),
            view(
                "account",
                2,
                "Active Accounts",
                "name accountnumber address1_city revenue",
                "statecode eq 0",
                "name asc",
            ),
            view("account", 3, "Inactive Accounts", "name address1_city", "statecode eq 1", "name asc"),
        ),
        form=(
            (
                "Summary",
                (
                    "name",
                    "accountnumber",
                    "telephone1",
                    "emailaddress1",
                    "websiteurl",
                    "primarycontactid",
                    "parentaccountid",
                ),
            ),
            ("Address", ("address1_line1", "address1_city", "address1_postalcode", "address1_country")),
            ("Details", ("industrycode", "revenue", "numberofemployees", "transactioncurrencyid", "description")),
        ),
        quick_find=("name", "accountnumber", "emailaddress1", "telephone1"),
        offline_commands=CRUD,
        related=(
            ("contact", "parentcustomerid"),
            ("opportunity", "customerid"),
            ("incident", "customerid"),
            ("activitypointer", "regardingobjectid"),
        ),
    ),
    Entity(
        "contact",
        "Contact",
        "Contacts",
        "contacts",
        "contactid",
        "fullname",
        "user",
        (
            pk("contactid", "Contact"),
            text("firstname", "First Name", 50),
            text("lastname", "Last Name", 50, required=True),
            derived("fullname", "Full Name", max_length=160, formula=FULL_NAME),
            text("jobtitle", "Job Title", 100),
            text("emailaddress1", "Email", 100, format_="email"),
            text("telephone1", "Business Phone", 50, format_="phone"),
            text("mobilephone", "Mobile Phone", 50, format_="phone"),
            date("birthdate", "Birthday"),
            lookup("parentcustomerid", "Company Name", "account", "contact"),
            text("address1_city", "City", 80),
            lookup("transactioncurrencyid", "Currency", "transactioncurrency"),
            memo("description", "Description"),
            *ACTIVE_STATES,
        ),
        views=(
            view(
                "contact",
                1,
                "My Active Contacts",
                "fullname parentcustomerid parentcustomerid.address1_city emailaddress1 telephone1",
                f"statecode eq 0 and {MINE}",
                "fullname asc",
            ),
            view("contact", 2, "Active Contacts", "fullname jobtitle emailaddress1", "statecode eq 0", "fullname asc"),
            view("contact", 3, "Inactive Contacts", "fullname emailaddress1", "statecode eq 1", "fullname asc"),
        ),
        form=(
            (
                "Contact",
                ("firstname", "lastname", "jobtitle", "parentcustomerid", "emailaddress1", "telephone1", "mobilephone"),
            ),
            ("Personal", ("birthdate", "address1_city", "transactioncurrencyid", "description")),
        ),
        quick_find=("fullname", "firstname", "lastname", "emailaddress1", "telephone1"),
        offline_commands=CRUD,
        related=(("opportunity", "customerid"), ("incident", "customerid"), ("activitypointer", "regardingobjectid")),
    ),
    Entity(
        "lead",
        "Lead",
        "Leads",
        "leads",
        "leadid",
        "fullname",
        "user",
        (
            pk("leadid", "Lead"),
            text("subject", "Topic", 300, required=True),
            text("firstname", "First Name", 50),
            text("lastname", "Last Name", 50, required=True),
            derived("fullname", "Name", max_length=160, formula=FULL_NAME),
            text("companyname", "Company Name", 100),
            text("jobtitle", "Job Title", 100),
            text("emailaddress1", "Email", 100, format_="email"),
            text("telephone1", "Business Phone", 50, format_="phone"),
            choice(
                "leadsourcecode",
                "Lead Source",
                (1, "Advertisement"),
                (2, "Employee Referral"),
                (3, "External Referral"),
                (4, "Partner"),
                (5, "Public Relations"),
                (6, "Seminar"),
                (7, "Trade Show"),
                (8, "Web"),
                (9, "Word of Mouth"),
                (10, "Other"),
            ),
            money("estimatedamount", "Est. Value"),
            lookup("parentaccountid", "Existing Account", "account"),
            lookup("parentcontactid", "Existing Contact", "contact"),
            lookup("qualifyingopportunityid", "Qualifying Opportunity", "opportunity"),
            lookup("transactioncurrencyid", "Currency", "transactioncurrency"),
            memo("description", "Description"),
            state((0, "Open", ()), (1, "Qualified", ()), (2, "Disqualified", (0,)), via={0: "Qualify or Disqualify"}),
            status(
                (1, "New", 0),
                (2, "Contacted", 0),
                (3, "Qualified", 1),
                (4, "Lost", 2),
                (5, "Cannot Contact", 2),
                (6, "No Longer Interested", 2),
                (7, "Canceled", 2),
            ),
        ),
        views=(
            view(
                "lead",
                1,
                "My Open Leads",
                "fullname subject companyname leadsourcecode statuscode",
                f"statecode eq 0 and {MINE}",
                "fullname asc",
            ),
            view("lead", 2, "Open Leads", "fullname companyname estimatedamount", "statecode eq 0", "createdon desc"),
            view(
                "lead", 3, "Closed Leads", "fullname subject statecode statuscode", "statecode ne 0", "modifiedon desc"
            ),
        ),
        form=(
            ("Contact", ("subject", "firstname", "lastname", "jobtitle", "telephone1", "emailaddress1")),
            ("Company", ("companyname", "leadsourcecode", "estimatedamount", "transactioncurrencyid", "description")),
            ("Qualification", ("parentaccountid", "parentcontactid", "qualifyingopportunityid")),
        ),
        quick_find=("fullname", "subject", "companyname", "emailaddress1"),
        offline_commands=(*CRUD, "qualify_lead", "disqualify_lead"),
        related=(("activitypointer", "regardingobjectid"),),
    ),
    Entity(
        "opportunity",
        "Opportunity",
        "Opportunities",
        "opportunities",
        "opportunityid",
        "name",
        "user",
        (
            pk("opportunityid", "Opportunity"),
            text("name", "Topic", 300, required=True),
            lookup("customerid", "Potential Customer", "account", "contact"),
            money("estimatedvalue", "Est. Revenue"),
            date("estimatedclosedate", "Est. Close Date"),
            integer("closeprobability", "Probability", 0, 100),
            text("stepname", "Pipeline Phase", 200),
            money("actualvalue", "Actual Revenue"),
            date("actualclosedate", "Actual Close Date"),
            lookup("originatingleadid", "Originating Lead", "lead"),
            lookup("competitorid", "Lost To", "competitor"),
            lookup("transactioncurrencyid", "Currency", "transactioncurrency"),
            memo("description", "Description"),
            state((0, "Open", ()), (1, "Won", (0,)), (2, "Lost", (0,)), via={0: "Close as Won or Lost"}),
            status((1, "In Progress", 0), (2, "On Hold", 0), (3, "Won", 1), (4, "Canceled", 2), (5, "Out-Sold", 2)),
        ),
        views=(
            view(
                "opportunity",
                1,
                "My Open Opportunities",
                "name customerid estimatedvalue estimatedclosedate stepname",
                f"statecode eq 0 and {MINE}",
                "estimatedclosedate asc",
            ),
            view(
                "opportunity",
                2,
                "Open Opportunities",
                "name customerid estimatedvalue closeprobability",
                "statecode eq 0",
                "name asc",
            ),
            view(
                "opportunity",
                3,
                "Closed Opportunities",
                "name customerid actualvalue actualclosedate statecode",
                "statecode ne 0",
                "actualclosedate desc",
            ),
        ),
        form=(
            ("Summary", ("name", "customerid", "estimatedvalue", "estimatedclosedate", "closeprobability", "stepname")),
            ("Close", ("actualvalue", "actualclosedate", "originatingleadid", "transactioncurrencyid", "description")),
        ),
        quick_find=("name",),
        offline_commands=(*CRUD, "close_opportunity"),
        related=(("opportunityproduct", "opportunityid"), ("activitypointer", "regardingobjectid")),
    ),
    Entity(
        "product",
        "Product",
        "Products",
        "products",
        "productid",
        "name",
        "organization",
        (
            pk("productid", "Product"),
            text("name", "Name", 100, required=True),
            text("productnumber", "Product ID", 100, required=True),
            money("price", "List Price"),
            memo("description", "Description"),
        ),
        views=(
            view("product", 1, "Active Products", "name productnumber price", "", "name asc"),
            view("product", 2, "All Products", "name productnumber", "", "productnumber asc"),
        ),
        quick_find=("name", "productnumber"),
        offline_commands=CRUD,
    ),
    Entity(
        "opportunityproduct",
        "Opportunity Product",
        "Opportunity Products",
        "opportunityproducts",
        "opportunityproductid",
        "productdescription",
        "user",
        (
            pk("opportunityproductid", "Opportunity Product"),
            text("productdescription", "Write-In Product", 500),
            lookup("opportunityid", "Opportunity", "opportunity", required=True, cascade="delete"),
            lookup("productid", "Existing Product", "product"),
            decimal("quantity", "Quantity", 0, 1_000_000_000),
            money("priceperunit", "Price Per Unit"),
            derived("extendedamount", "Extended Amount", "money", formula=("product", ("quantity", "priceperunit"))),
        ),
        views=(
            view(
                "opportunityproduct",
                1,
                "Opportunity Products",
                "productid quantity priceperunit extendedamount",
                "",
                "productdescription asc",
            ),
            view(
                "opportunityproduct",
                2,
                "Recent Opportunity Products",
                "productid opportunityid extendedamount",
                "",
                "modifiedon desc",
            ),
        ),
        quick_find=("productdescription",),
        offline_commands=CRUD,
    ),
    Entity(
        "competitor",
        "Competitor",
        "Competitors",
        "competitors",
        "competitorid",
        "name",
        "organization",
        (
            pk("competitorid", "Competitor"),
            text("name", "Name", 100, required=True),
            text("websiteurl", "Website", 200, format_="url"),
            memo("strengths", "Strengths"),
            memo("weaknesses", "Weaknesses"),
        ),
        views=(
            view("competitor", 1, "All Competitors", "name websiteurl", "", "name asc"),
            view("competitor", 2, "Recently Changed Competitors", "name", "", "modifiedon desc"),
        ),
        quick_find=("name",),
        offline_commands=CRUD,
        related=(("competitoraddress", "competitorid"),),
    ),
    Entity(
        "competitoraddress",
        "Competitor Address",
        "Competitor Addresses",
        "competitoraddresses",
        "competitoraddressid",
        "line1",
        "organization",
        (
            pk("competitoraddressid", "Competitor Address"),
            lookup("competitorid", "Competitor", "competitor", required=True, cascade="delete"),
            text("line1", "Street 1", 250, required=True),
            text("city", "City", 80),
            text("country", "Country/Region", 80),
        ),
        views=(
            view("competitoraddress", 1, "Competitor Addresses", "line1 city country competitorid", "", "city asc"),
            view("competitoraddress", 2, "All Competitor Addresses", "line1 competitorid", "", "modifiedon desc"),
        ),
        quick_find=("line1", "city"),
        offline_commands=CRUD,
    ),
    activity(
        "appointment",
        "Appointment",
        "Appointments",
        (text("location", "Location", 200),),
        (*CRUD, "convert_activity_to_case"),
        "subject regardingobjectid scheduledstart scheduledend location",
    ),
    activity(
        "phonecall",
        "Phone Call",
        "Phone Calls",
        (
            text("phonenumber", "Phone Number", 200, format_="phone"),
            choice("directioncode", "Direction", (0, "Incoming"), (1, "Outgoing")),
        ),
        CRUD,
        "subject regardingobjectid phonenumber scheduledend",
    ),
    activity(
        "task",
        "Task",
        "Tasks",
        (integer("percentcomplete", "Percent Complete", 0, 100),),
        CRUD,
        "subject regardingobjectid prioritycode scheduledend percentcomplete",
    ),
    activity(
        "email",
        "Email",
        "Emails",
        (
            text("sender", "From", 250),
            memo("torecipients", "To", 500),
            choice("directioncode", "Direction", (0, "Incoming"), (1, "Outgoing")),
        ),
        ("read",),
        "subject sender regardingobjectid scheduledend",
    ),
    Entity(
        "activitypointer",
        "Activity",
        "Activities",
        "activitypointers",
        "activityid",
        "subject",
        "user",
        activity_common(),
        views=(
            view(
                "activitypointer",
                1,
                "My Open Activities",
                "subject activitytypecode regardingobjectid scheduledend",
                f"statecode eq 0 and {MINE}",
                "scheduledend asc",
            ),
            view(
                "activitypointer",
                2,
                "All Activities",
                "subject activitytypecode regardingobjectid",
                "",
                "modifiedon desc",
            ),
        ),
        quick_find=("subject",),
        offline_commands=("read", "delete"),
        union_of=("appointment", "phonecall", "task", "email"),
    ),
    Entity(
        "incident",
        "Case",
        "Cases",
        "incidents",
        "incidentid",
        "title",
        "user",
        (
            pk("incidentid", "Case"),
            text("title", "Case Title", 200, required=True),
            derived("ticketnumber", "Case Number", max_length=100, autonumber=("CAS-", 6)),
            lookup("customerid", "Customer", "account", "contact", required=True),
            memo("description", "Description"),
            choice("prioritycode", "Priority", (1, "High"), (2, "Normal"), (3, "Low")),
            choice("caseorigincode", "Origin", (1, "Phone"), (2, "Email"), (3, "Web"), (4, "In Person")),
            state((0, "Active", (1, 2)), (1, "Resolved", (0,)), (2, "Cancelled", (0,))),
            status(
                (1, "In Progress", 0),
                (2, "On Hold", 0),
                (3, "Waiting for Details", 0),
                (5, "Problem Solved", 1),
                (6, "Cancelled", 2),
            ),
        ),
        views=(
            view(
                "incident",
                1,
                "My Active Cases",
                "ticketnumber title customerid prioritycode caseorigincode",
                f"statecode eq 0 and {MINE}",
                "createdon desc",
            ),
            view("incident", 2, "Active Cases", "title customerid prioritycode", "statecode eq 0", "title asc"),
            view("incident", 3, "Resolved Cases", "ticketnumber title customerid", "statecode eq 1", "modifiedon desc"),
        ),
        quick_find=("title", "ticketnumber"),
        offline_commands=CRUD,
        related=(("activitypointer", "regardingobjectid"),),
    ),
    Entity(
        "annotation",
        "Note",
        "Notes",
        "annotations",
        "annotationid",
        "subject",
        "user",
        (
            pk("annotationid", "Note"),
            text("subject", "Title", 500),
            memo("notetext", "Description", 100_000),
            text("filename", "File Name", 255),
            text("mimetype", "Mime Type", 256),
            memo("documentbody", "Document", 5_242_880),
            lookup("objectid", "Regarding", "account", "contact", "lead", "opportunity", "incident"),
        ),
        views=(
            view("annotation", 1, "All Notes", "subject filename objectid", "", "modifiedon desc"),
            view("annotation", 2, "Attachments", "filename mimetype objectid", "filename ne null", "filename asc"),
        ),
        quick_find=("subject", "filename"),
        offline_commands=("read",),
    ),
    Entity(
        "connectionrole",
        "Connection Role",
        "Connection Roles",
        "connectionroles",
        "connectionroleid",
        "name",
        "organization",
        (
            pk("connectionroleid", "Connection Role"),
            text("name", "Name", 100, required=True),
            choice(
                "category",
                "Connection Role Category",
                (1, "Business"),
                (2, "Family"),
                (3, "Social"),
                (4, "Sales"),
                (5, "Other"),
            ),
            memo("description", "Description"),
        ),
        views=(
            view("connectionrole", 1, "All Connection Roles", "name category", "", "name asc"),
            view("connectionrole", 2, "Sales Connection Roles", "name", "category eq 4", "name asc"),
        ),
        quick_find=("name",),
        offline_commands=("read",),
    ),
    Entity(
        "connection",
        "Connection",
        "Connections",
        "connections",
        "connectionid",
        "name",
        "user",
        (
            pk("connectionid", "Connection"),
            text("name", "Name", 200),
            lookup("record1id", "Connected From", "account", "contact", "opportunity", "lead", required=True),
            lookup(
                "record2id", "Connected To", "account", "contact", "opportunity", "lead", "competitor", required=True
            ),
            lookup("record1roleid", "Role (From)", "connectionrole"),
            lookup("record2roleid", "Role (To)", "connectionrole"),
            memo("description", "Description"),
        ),
        views=(
            view("connection", 1, "All Connections", "record1id record2id record2roleid", "", "modifiedon desc"),
            view("connection", 2, "Connections by Name", "name record1id record2id", "", "name asc"),
        ),
        quick_find=("name",),
        offline_commands=("read",),
    ),
)

SYSTEM_ENTITY_NAMES = frozenset(e.logical_name for e in SYSTEM_ENTITIES)
