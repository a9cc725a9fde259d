"""Issue 11.8 (passwords): one policy for customers and staff, NIST SP 800-63B style."""

from __future__ import annotations

import json

import pytest

from portal.auth.policy import COMMON, password_problem
from portal.auth.staff import create_staff
from portal.importer import ImportProblem, import_file
from tests.support.businesses import new_business_data

BUSINESS = "Brightwater Plumbing"
EMAIL = "pat.lee@example.com"


@pytest.mark.parametrize(
    "password",
    [
        "letmein!",  # the review's four, let through before
        "Password123!",
        "Summer2026!",
        "Pa$$w0rd",
        "password",  # and the staff passwords accepted before
        "12345678",
        "P@ssw0rd!2024",
        "!!Dragon1234",
        "IL0VEY0U",
        "q w e r t y 1 2 3",
    ],
)
def test_common_passwords_are_refused_in_their_usual_disguises(password):
    assert password_problem(password) == COMMON


@pytest.mark.parametrize(
    "password,reason",
    [
        ("Brightwater Plumbing", "business's name"),
        ("brightwater2026!", "business's name"),
        ("BrightWaterPlumbing1", "business's name"),
        ("pat.lee@example.com", "your email address"),
        ("PAT.LEE@EXAMPLE.COM", "your email address"),
        ("pat.lee1987", "your email address"),
        ("short", "at least 8 characters"),
        ("x" * 129, "at most 128 characters"),
        ("ééééééééé", "repeat one character"),
    ],
)
def test_own_email_business_name_and_length(password, reason):
    assert reason in password_problem(password, business_name=BUSINESS, email=EMAIL)


@pytest.mark.parametrize(
    "password",
    [
        "correct horse battery staple",
        "a garden of tulips",
        "Brightwater fixed our leak fast",  # the name within a real sentence is fine
        "çafé ☕ Straße 8",
        "すし と ラーメン が すき",
        "tr4ctor-m4ple-77",  # no composition rules: nothing demands a digit or a symbol
        "nodigitsnosymbols",
        "#8!dragon$5@2&9",  # a common word inside many random characters is long, not common
    ],
)
def test_long_and_unusual_passwords_are_welcome(password):
    assert password_problem(password, business_name=BUSINESS, email=EMAIL) is None


async def test_staff_created_from_the_command_line_get_the_same_policy(app, demo):
    problem = await create_staff("xyzplumbing", "new.desk@example.com", "", "office", "12345678")
    assert problem == COMMON
    problem = await create_staff(
        "xyzplumbing", "new.desk@example.com", "", "office", "XYZ Services!"
    )
    assert "business's name" in problem
    assert (
        await create_staff(
            "xyzplumbing", "new.desk@example.com", "", "office", "desk by the window"
        )
        is None
    )


@pytest.mark.parametrize("who", ["staff", "customer"])
async def test_the_importer_refuses_weak_passwords_and_imports_nothing(app, demo, who):
    data = new_business_data(f"weak{who}")
    if who == "staff":
        data["staff"][0]["password"] = "Password123!"
    else:
        data["customers"][0]["portal_account"]["password"] = "Summer2026!"
    with pytest.raises(ImportProblem) as refused:
        await import_file(json.dumps(data))
    assert COMMON in str(refused.value)
    from portal.db import tables as t

    assert not await t.Tenant.exists().where(t.Tenant.host == f"weak{who}").run()
