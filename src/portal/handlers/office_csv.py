"""Office › CSV upload: a spreadsheet of customers or open invoices, in three steps —
choose the file, match its columns to the portal's fields, see the dry run (what would be
created, changed or refused, row by row) — and only then import. Each step is a plain form
(the file's text rides along in the form), so it works the same with JavaScript off."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.datastructures import UploadFile

from portal.api import csv_upload, sync
from portal.auth.context import TenantDep
from portal.auth.guards import StaffDep
from portal.auth.sessions import SessionInfo
from portal.db import activity
from portal.db.rows import TenantRow
from portal.pages import office_page
from portal.web import after_write, form_data


async def _page(
    request: Request[Any, Any, Any],
    tenant: TenantRow,
    staff: SessionInfo,
    context: dict[str, Any] | None = None,
    *,
    status: int = 200,
) -> Response[Any]:
    return await office_page(
        request,
        tenant,
        staff,
        "csv",
        "office/csv.html",
        {
            "kinds": csv_upload.KINDS,
            "fields": csv_upload.FIELDS,
            "step": "choose",
            "kind": "customers",
            "form_error": "",
            "notice": "",
            "errors": {},
            **(context or {}),
        },
        block="upload" if request.method == "POST" else "region",
        status_code=status,
    )


@get("/csv")
async def csv_page(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep
) -> Response[Any]:
    """Step 1: choose what the file holds and the file."""
    done = request.query_params.get("imported", "")
    notice = f"Imported: {done} rows written." if done.isdigit() and len(done) < 7 else ""
    return await _page(request, tenant, staff, {"notice": notice})


async def _units(tenant_id: int, kind: str) -> list[tuple[str, str]]:
    """The business units a file of open invoices may be for (none for other kinds)."""
    return await sync.unit_choices(tenant_id) if kind == "invoices" else []


def _mapping_context(
    kind: str,
    sheet: csv_upload.Sheet,
    text: str,
    mapping: dict[str, str],
    unit: str,
    units: list[tuple[str, str]],
) -> dict[str, Any]:
    return {
        "step": "map",
        "kind": kind,
        "columns": sheet.columns,
        "rows": len(sheet.rows),
        "sample": sheet.rows[:3],
        "csv_text": text,
        "mapping": mapping,
        "units": units,
        "unit": unit or (units[0][0] if units else ""),
    }


@post("/csv")
async def upload(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep
) -> Response[Any]:
    """Step 2: the file is read; its columns are matched to the portal's fields."""
    try:
        form = await request.form()
    except Exception:  # a malformed upload is the sender's problem, not a crash
        form = None
    kind = form.get("kind", "") if form is not None else ""
    upload_file = form.get("file") if form is not None else None
    if kind not in csv_upload.KINDS:
        return await _page(
            request, tenant, staff, {"form_error": "Choose what the file holds."}, status=422
        )
    if not isinstance(upload_file, UploadFile):
        context = {"kind": kind, "form_error": "Choose a CSV file to upload."}
        return await _page(request, tenant, staff, context, status=422)
    raw = await upload_file.read()
    try:
        sheet = csv_upload.read(raw)
    except csv_upload.CsvProblem as problem:
        return await _page(
            request, tenant, staff, {"kind": kind, "form_error": str(problem)}, status=422
        )
    text = raw.decode("utf-8-sig")
    mapping = csv_upload.guess_mapping(kind, sheet.columns)
    units = await _units(tenant["id"], kind)
    context = _mapping_context(kind, sheet, text, mapping, "", units)
    return await _page(request, tenant, staff, context)


async def _checked(
    request: Request[Any, Any, Any], tenant: TenantRow, staff: SessionInfo, dry_run: bool
) -> Response[Any]:
    form = await form_data(request)
    kind = form.get("kind", "")
    text = form.get("csv", "")
    if kind not in csv_upload.KINDS:
        return await _page(
            request, tenant, staff, {"form_error": "Choose what the file holds."}, status=422
        )
    try:
        sheet = csv_upload.read(text.encode())
    except csv_upload.CsvProblem as problem:
        return await _page(
            request, tenant, staff, {"kind": kind, "form_error": str(problem)}, status=422
        )
    units = await _units(tenant["id"], kind)
    checked = csv_upload.check_mapping(kind, form, sheet.columns, {u for u, _ in units})
    shown = checked.values
    context = _mapping_context(kind, sheet, text, shown["mapping"], shown["unit"], units)
    choice = checked.clean
    if choice is None:
        context["errors"] = checked.problems
        return await _page(request, tenant, staff, context, status=422)
    preview = await csv_upload.run(
        tenant["id"], kind, sheet, choice.mapping, unit=choice.unit, dry_run=dry_run
    )
    if dry_run:
        return await _page(
            request, tenant, staff, {**context, "step": "preview", "preview": preview}
        )
    written = preview.counts.get("created", 0) + preview.counts.get("updated", 0)
    await activity.record(
        tenant["id"],
        activity.Actor(staff.email),
        "csv.imported",
        csv_upload.KINDS[kind],
        "",
        f"{written} rows written, {preview.counts.get('error', 0)} refused",
    )
    notice = f"Imported: {written} rows written."
    return await after_write(
        request,
        f"/office/csv?imported={written}",
        lambda: _page(
            request, tenant, staff, {"notice": notice, "preview": preview, "step": "done"}
        ),
    )


@post("/csv/preview")
async def preview(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep
) -> Response[Any]:
    """Step 3: the dry run — nothing is written."""
    return await _checked(request, tenant, staff, dry_run=True)


@post("/csv/import")
async def import_rows(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep
) -> Response[Any]:
    """Write the rows the dry run showed (checked again: the data may have moved on)."""
    return await _checked(request, tenant, staff, dry_run=False)


ROUTES = [csv_page, upload, preview, import_rows]
