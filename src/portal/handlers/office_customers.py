"""Office › Customers: find a customer, see and edit their contact emails, see whether
they have a portal account, invite them, and email them an invoice."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

from portal import privacy
from portal.auth import grants, links
from portal.auth.context import TenantDep
from portal.auth.guards import StaffDep
from portal.auth.sessions import SessionInfo
from portal.db import activity
from portal.db import grants as grants_db
from portal.db import office_customers as customers
from portal.db import privacy as privacy_db
from portal.db.rows import TenantRow
from portal.forms import clean_email, record_id
from portal.mail import notifications
from portal.mail.worker import wake
from portal.pages import is_admin, office_page, refuse
from portal.web import after_write, form_data, see_other


@get("/customers")
async def customers_page(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep
) -> Response[Any]:
    """Find a customer by name, customer number or email."""
    # A NUL byte is never part of a name (and PostgreSQL refuses one in a query).
    query = request.query_params.get("q", "")[:100].replace("\x00", "")
    after = record_id(request.query_params.get("after"))
    rows, next_after = await customers.search(tenant["id"], query, after)
    # The search box asks for the results only; a menu click or plain load gets the page.
    results_only = request.headers.get("hx-target", "").endswith("#customer-results")
    return await office_page(
        request,
        tenant,
        staff,
        "customers",
        "office/customers.html",
        {"rows": rows, "q": query, "after": after, "next_after": next_after},
        block="results" if results_only else "region",
    )


async def _customer_or_404(tenant: TenantRow, customer_id: int) -> dict[str, Any]:
    who = await customers.customer(tenant["id"], customer_id)
    if who is None:
        raise NotFoundException()
    return who


DONE = {
    "added": "The email was added. The customer can now request an invitation with it.",
    "removed": "The email was removed. Its portal account no longer sees this customer.",
    "invited": "An invitation was sent: the customer gets a link to create a password.",
    # Queued, not sent yet: delivery happens in the background and may fail (Office › Emails).
    "emailed": "The invoice email is on its way.",
}
ACCESS_DONE = {"revoked": "Access was revoked: that person no longer sees this customer."}
ERASED = (
    "This customer's personal data is erased: their name, emails, phone and addresses are "
    "replaced, their portal sign-in and stored emails deleted. Invoices, payments and the "
    "audit trail stay."
)


async def _customer_page(
    request: Request[Any, Any, Any],
    tenant: TenantRow,
    staff: SessionInfo,
    who: dict[str, Any],
    *,
    block: str = "region",
    status: int = 200,
    emails_notice: str = "",
    emails_error: str = "",
    errors: dict[str, str] | None = None,
    new_email: str = "",
    invoices_notice: str = "",
    invoices_error: str = "",
    privacy_error: str = "",
    access_notice: str = "",
) -> Response[Any]:
    after = record_id(request.query_params.get("after"))
    rows, next_after = await customers.invoices(tenant["id"], who["id"], after)
    done = DONE.get(request.query_params.get("done", ""), "")
    access_notice = access_notice or ACCESS_DONE.get(request.query_params.get("done", ""), "")
    if done and request.query_params.get("done") == "emailed":
        invoices_notice = invoices_notice or done
    elif done:
        emails_notice = emails_notice or done
    return await office_page(
        request,
        tenant,
        staff,
        "customers",
        "office/customer.html",
        {
            "c": who,
            "invoices": rows,
            "after": after,
            "next_after": next_after,
            "emails_notice": emails_notice,
            "emails_error": emails_error,
            "errors": errors or {},
            "new_email": new_email,
            "invoices_notice": invoices_notice,
            "invoices_error": invoices_error,
            "privacy_notice": ERASED if request.query_params.get("done") == "erased" else "",
            "privacy_error": privacy_error,
            "access": await grants_db.for_office(tenant["id"], who["id"]),
            "access_notice": access_notice,
            "role_words": grants.ROLE_WORDS,
        },
        block=block,
        status_code=status,
    )


@get("/customers/{customer_id:int}")
async def customer_page(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep, customer_id: FromPath[int]
) -> Response[Any]:
    """A customer: contact emails and portal access, invoices (Email invoice)."""
    return await _customer_page(request, tenant, staff, await _customer_or_404(tenant, customer_id))


async def _emails_answer(
    request: Request[Any, Any, Any],
    tenant: TenantRow,
    staff: SessionInfo,
    customer_id: int,
    done: str = "",
    error: str = "",
    errors: dict[str, str] | None = None,
    new_email: str = "",
) -> Response[Any]:
    """After a change to the emails: the emails card (htmx) or the page again."""

    async def emails_card() -> Response[Any]:
        who = await _customer_or_404(tenant, customer_id)
        return await _customer_page(
            request,
            tenant,
            staff,
            who,
            block="emails",
            status=422 if (error or errors) else 200,
            emails_notice=DONE.get(done, ""),
            emails_error=error,
            errors=errors,
            new_email=new_email,
        )

    if not done:  # a problem: the card (htmx) or the page, with the message
        return await emails_card()
    return await after_write(request, f"/office/customers/{customer_id}?done={done}", emails_card)


@post("/customers/{customer_id:int}/emails")
async def add_email(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep, customer_id: FromPath[int]
) -> Response[Any]:
    """Add a contact email (so the customer can sign up with it)."""
    await _customer_or_404(tenant, customer_id)
    form = await form_data(request)
    email, problem = clean_email(form.get("email", ""))
    if problem:
        problem = "Enter the email address to add." if not email else problem
        return await _emails_answer(
            request, tenant, staff, customer_id, errors={"email": problem}, new_email=email
        )
    problem = await customers.add_email(tenant["id"], customer_id, email)
    if problem:
        return await _emails_answer(
            request, tenant, staff, customer_id, errors={"email": problem}, new_email=email
        )
    return await _emails_answer(request, tenant, staff, customer_id, done="added")


@post("/customers/{customer_id:int}/emails/{email_id:int}/remove")
async def remove_email(
    request: Request[Any, Any, Any],
    tenant: TenantDep,
    staff: StaffDep,
    customer_id: FromPath[int],
    email_id: FromPath[int],
) -> Response[Any]:
    """Remove a contact email: that email's portal account loses access to this record."""
    await _customer_or_404(tenant, customer_id)
    removed = await customers.remove_email(tenant["id"], customer_id, email_id)
    if removed is None:
        raise NotFoundException()
    return await _emails_answer(request, tenant, staff, customer_id, done="removed")


@post("/customers/{customer_id:int}/invite")
async def invite(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep, customer_id: FromPath[int]
) -> Response[Any]:
    """Send the same confirmation email as "Request an invitation" to one of the
    customer's emails."""
    who = await _customer_or_404(tenant, customer_id)
    form = await form_data(request)
    email = form.get("email", "").strip().lower()
    on_record = next((e for e in who["emails"] if e["email"] == email), None)
    if on_record is None:
        return await _emails_answer(
            request, tenant, staff, customer_id, error="Choose one of the customer's emails."
        )
    if not tenant["portal_open"]:
        return await _emails_answer(
            request,
            tenant,
            staff,
            customer_id,
            error="Your customer portal is closed: open it in Portal settings before inviting customers.",
        )
    if on_record["account"] and on_record["account"]["confirmed_at"]:
        return await _emails_answer(
            request,
            tenant,
            staff,
            customer_id,
            error=f"{email} already has a portal account. They can use “Forgot password?” if needed.",
        )
    await links.request_invitation(request.app.state.settings, tenant, email)
    wake()
    return await _emails_answer(request, tenant, staff, customer_id, done="invited")


@post("/customers/{customer_id:int}/invoices/{invoice_id:int}/email")
async def email_invoice(
    request: Request[Any, Any, Any],
    tenant: TenantDep,
    staff: StaffDep,
    customer_id: FromPath[int],
    invoice_id: FromPath[int],
) -> Response[Any]:
    """Send the invoice email (the business's template, with the portal's sign-in link)."""
    who = await _customer_or_404(tenant, customer_id)
    invoice = await customers.invoice_for_customer(tenant["id"], customer_id, invoice_id)
    if invoice is None:
        raise NotFoundException()
    form = await form_data(request)
    to = form.get("to", "").strip().lower()
    addresses = [e["email"] for e in who["emails"]]
    if invoice["status"] == "void":
        error = f"Invoice {invoice['number']} is void: there is nothing to send."
    elif not addresses:
        error = "This customer has no email. Add one under Contact emails first."
    elif to not in addresses:
        error = "Choose one of the customer's emails."
    else:
        error = ""
    if error:
        return await _customer_page(
            request,
            tenant,
            staff,
            who,
            block="invoices",
            status=422,
            invoices_error=error,
        )
    await notifications.email_invoice(
        request.app.state.settings, tenant, who, invoice, to, staff.email
    )
    wake()
    notice = f"The invoice email is on its way: invoice {invoice['number']} to {to}."
    return await after_write(
        request,
        f"/office/customers/{customer_id}?done=emailed",
        lambda: _customer_page(
            request, tenant, staff, who, block="invoices", invoices_notice=notice
        ),
    )


@post("/customers/{customer_id:int}/grants/{grant_id:int}/revoke")
async def revoke_grant(
    request: Request[Any, Any, Any],
    tenant: TenantDep,
    staff: StaffDep,
    customer_id: FromPath[int],
    grant_id: FromPath[int],
) -> Response[Any]:
    """Take away a person's access to this customer (any staff role; in the activity log).
    Another customer's or business's grant, or one already revoked, answers 404."""
    who = await _customer_or_404(tenant, customer_id)
    grant = await grants_db.live_grant(tenant["id"], grant_id)
    if grant is None or grant["customer_id"] != customer_id:
        raise NotFoundException()  # another customer's (or business's), or revoked already
    if not await grants.revoke_by_office(tenant["id"], grant_id, staff.email):
        raise NotFoundException()
    return await after_write(
        request,
        f"/office/customers/{customer_id}?done=revoked#access",
        lambda: _customer_page(
            request, tenant, staff, who, block="access", access_notice=ACCESS_DONE["revoked"]
        ),
    )


async def _admin_only(
    request: Request[Any, Any, Any], tenant: TenantRow, staff: SessionInfo
) -> Response[Any] | None:
    if is_admin(staff):
        return None
    return await refuse(
        request,
        tenant,
        staff,
        "Only an administrator can export or erase a customer's data.",
        section="customers",
        back="/office/customers",  # not the record's page: the id may be anyone's
    )


@get("/customers/{customer_id:int}/export")
async def export_customer(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep, customer_id: FromPath[int]
) -> Response[Any]:
    """One customer's data as a zip: customer.json and a PDF of each invoice (admins)."""
    refusal = await _admin_only(request, tenant, staff)
    if refusal:
        return refusal
    try:
        name, body = await privacy.export_zip(tenant, customer_id)
    except privacy_db.NotFound:
        raise NotFoundException() from None
    return Response(
        body,
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "private, no-store",
        },
    )


@post("/customers/{customer_id:int}/erase")
async def erase_customer(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep, customer_id: FromPath[int]
) -> Response[Any]:
    """Erase a customer's personal data on their request (admins; ticked confirmation)."""
    refusal = await _admin_only(request, tenant, staff)
    if refusal:
        return refusal
    who = await _customer_or_404(tenant, customer_id)
    if (await form_data(request)).get("confirm") != "yes":
        problem = "Tick the box to confirm: erasing cannot be undone. Nothing was erased."
        return await _customer_page(
            request, tenant, staff, who, block="privacy", status=422, privacy_error=problem
        )
    try:
        await privacy_db.erase(tenant["id"], customer_id, activity.Actor(staff.email))
    except privacy_db.NotFound:
        raise NotFoundException() from None
    return see_other(request, f"/office/customers/{customer_id}?done=erased#privacy")


ROUTES = [
    customers_page,
    customer_page,
    add_email,
    remove_email,
    invite,
    email_invoice,
    revoke_grant,
    export_customer,
    erase_customer,
]
