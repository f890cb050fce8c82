"""ISDA SIMM over the API: upload a CRIF and get the initial margin both ways with its
breakdown; list and download uploads; the stream's SIMM results and each portfolio's
history.

An upload is margined by :func:`marginflow.app.simm.simm_of_crif`, the function behind
``marginflow simm``, on the uploaded bytes written to a private temporary file (mode 0600
in a 0700 folder, removed at once), so the numbers are the CLI's to the bit and the
rejected rows are named as the CLI names them, ``name:line: field: reason``, with the
uploaded file's name where the CLI has its path.

Every upload the endpoint receives is kept, encrypted at rest (AES-GCM,
:mod:`marginflow.service.sealed`): an accepted one as a ``crif-upload`` blob with its
result as the blob's detail, one refused as a whole (not a CRIF, no valid row, a bad
setting) as a ``crif-rejected`` blob with the reason, answered 422 with the one error body
and its id in ``X-Upload-Id``. Both are audited (``simm.upload``). A body over the upload
limit is refused with 413 by the middleware from its Content-Length, or as it streams in,
before any of it is stored: keeping it would mean storing an unbounded body from a sender
who may not even have signed in, which is what the limit is there to prevent. The 413 is
counted in ``marginflow_http_refused_total`` and logged with its request id.

An upload belongs to one member, the party it was made for: a member's user uploads for
its own member only; a clearing-house user names any party, or none (then only the
clearing house sees it). Whose uploads a caller sees is decided by the query scope.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import tempfile
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, Request, Response, UploadFile
from pydantic import BaseModel

from marginflow.app.simm import SimmRun, simm_of_crif
from marginflow.core.errors import DecryptionError, MarginflowError, RowFailure, ValidationError
from marginflow.service.api.models import Page, iso
from marginflow.service.auth import Caller, heavy, require
from marginflow.service.context import now_ns
from marginflow.service.errors import ServiceError
from marginflow.service.logs import security_event
from marginflow.service.roles import Permission
from marginflow.service.scope import UPLOAD_KINDS, NotFoundError
from marginflow.service.sealed import open_blob, seal
from marginflow.service.tables import Format, export
from marginflow.simm.calibration import available_versions
from marginflow.simm.results import Node, SideResult
from marginflow.store.rows import Blob, StoredSimm

router = APIRouter(prefix="/api/v1/simm", tags=["SIMM"])
Uploader = Annotated[Caller, Depends(require(Permission.SIMM))]
Reader = Annotated[Caller, Depends(require(Permission.READ))]
Limit = Annotated[int, Query(ge=1, le=1000, description="rows per page")]
Offset = Annotated[int, Query(ge=0, le=10_000_000, description="rows to skip")]
Fmt = Annotated[Format, Query(description="json, or csv / parquet to download (audited)")]

ACCEPTED, REJECTED = UPLOAD_KINDS
_PARTY = re.compile(r"[A-Za-z0-9._-]{1,64}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._ -]")

MSG_MPOR = "must be 10 or 1, got {value}"
MSG_VERSION = "unknown SIMM version {value!r} (shipped: {choices})"
MSG_CURRENCY = "is not an ISO currency code: {value!r}"
MSG_PARTY = "must be 1 to 64 letters, digits, '.', '_' or '-'"
MSG_OWN_PARTY = "a member's user uploads for its own member only ({member})"
MSG_NO_VALID_ROW = "{first} (no valid row: {lines} line(s) rejected)"
MSG_EXPORT = "your roles do not allow export (CSV and Parquet downloads)"
MSG_SEALED = "the stored file cannot be opened; quote the request id to the operators"


# -- response models -------------------------------------------------------------------------
class TreeNode(BaseModel):
    """A line of the breakdown: its name, level (``portfolio``, ``side``, ``model``,
    ``product_class``, ``risk_class``, ``margin_type``, ``bucket``…) and amount in the
    result currency (null on the portfolio, which has one amount per side)."""

    name: str
    level: str
    amount: float | None
    children: list[TreeNode] = []


class SimmPortfolio(BaseModel):
    """A portfolio's initial margin both ways: ``collect_im`` is the margin its owner
    collects (SIMM of the sensitivities as given), ``post_im`` the margin it posts; with
    each side's winning regulation and the breakdown tree."""

    portfolio: str
    party: str | None
    counterparty: str
    collect_im: float
    post_im: float
    collect_regulation: str | None
    post_regulation: str | None
    currency: str
    tree: TreeNode


class RejectedRow(BaseModel):
    """A CRIF row that was not used: ``message`` is the CLI's ``name:line: field: reason``."""

    line: int
    field: str
    reason: str
    raw: str
    message: str


class UploadError(BaseModel):
    field: str | None
    reason: str


class Upload(BaseModel):
    """An upload and its result (``status`` ``accepted``), or why it was refused as a whole
    (``rejected``, with ``error``)."""

    id: str
    name: str
    created: str
    status: str
    owner: str
    party: str | None
    counterparty: str
    version: str
    mpor: int
    currency: str
    size: int
    portfolios: list[SimmPortfolio]
    rejected: list[RejectedRow]
    rows: int
    rejected_lines: int
    notes: list[str]
    error: UploadError | None = None


class UploadInfo(BaseModel):
    """A line of the upload list (the result is at ``/simm/uploads/{id}``)."""

    id: str
    name: str
    created: str
    status: str
    owner: str
    party: str | None
    size: int
    version: str
    mpor: int
    currency: str
    rows: int
    rejected_lines: int
    portfolios: int
    collect_im: float
    post_im: float
    error: str | None


class SimmResult(BaseModel):
    """A SIMM result of one portfolio: from the stream (a CRIF submission on the log) or
    from an upload (``upload_id``)."""

    source: str
    portfolio: str
    party: str | None
    counterparty: str
    business_date: str
    time: str
    version: str
    mpor: int
    currency: str
    collect_im: float
    post_im: float
    collect_regulation: str | None
    post_regulation: str | None
    rows: int
    submission_id: str | None
    upload_id: str | None
    tree: TreeNode


RESULT_COLUMNS = [c for c in SimmResult.model_fields if c != "tree"]
UPLOAD_COLUMNS = list(UploadInfo.model_fields)


# -- trees -------------------------------------------------------------------------------------
def node_tree(node: Node, *, name: str | None = None, level: str | None = None) -> TreeNode:
    """A report's breakdown node as a tree (renamed at the top when asked)."""
    return TreeNode(
        name=node.name if name is None else name,
        level=node.level if level is None else level,
        amount=float(node.margin),
        children=[node_tree(c) for c in node.children],
    )


def _side_tree(side: str, result: SideResult | None) -> TreeNode:
    if result is None:
        return TreeNode(name=side, level="side", amount=0.0)
    return node_tree(result.breakdown, name=side, level="side")


def stored_tree(s: StoredSimm) -> TreeNode:
    """The tree of a stream result: its lines (side, model, product class, risk class,
    margin type, depth first) under the portfolio."""
    sides = {
        "collect": TreeNode(name="collect", level="side", amount=s.collect_im),
        "post": TreeNode(name="post", level="side", amount=s.post_im),
    }
    levels = ("model", "product_class", "risk_class", "margin_type")
    for line in s.breakdown:
        parent = sides.get(line.side)
        if parent is None:
            continue
        path = [p for p in (line.model, line.product_class, line.risk_class, line.margin_type) if p]
        for depth, name in enumerate(path[:-1]):
            found = next((c for c in parent.children if c.name == name), None)
            if found is None:
                found = TreeNode(name=name, level=levels[depth], amount=None)
                parent.children.append(found)
            parent = found
        if path:
            parent.children.append(
                TreeNode(name=path[-1], level=levels[len(path) - 1], amount=line.margin)
            )
    return TreeNode(
        name=s.portfolio, level="portfolio", amount=None, children=[sides["collect"], sides["post"]]
    )


def portfolios_of(run: SimmRun, party: str | None, counterparty: str) -> list[SimmPortfolio]:
    """One entry per portfolio of ``run``, both sides, in the report's order."""
    sides: dict[str, dict[str, SideResult]] = {}
    for r in run.report.results:
        sides.setdefault(r.portfolio, {})[r.side] = r
    out = []
    for portfolio, both in sides.items():
        call, post = both.get("call"), both.get("post")
        out.append(
            SimmPortfolio(
                portfolio=portfolio,
                party=party,
                counterparty=counterparty,
                collect_im=float(call.im) if call else 0.0,
                post_im=float(post.im) if post else 0.0,
                collect_regulation=call.regulation if call else None,
                post_regulation=post.regulation if post else None,
                currency=run.report.currency,
                tree=TreeNode(
                    name=portfolio,
                    level="portfolio",
                    amount=None,
                    children=[_side_tree("collect", call), _side_tree("post", post)],
                ),
            )
        )
    return out


# -- the upload --------------------------------------------------------------------------------
def safe_name(filename: str | None) -> str:
    """The uploaded file's base name with anything but letters, digits, ``._ -`` replaced
    (it appears in messages and in a Content-Disposition header)."""
    base = (filename or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    name = _UNSAFE_NAME.sub("_", base)[:128].strip(" .")
    return name or "upload.csv"


def _suffix(name: str) -> str:
    # what `marginflow simm` reads by suffix: Parquet for .parquet/.pq, CSV for the rest
    return ".parquet" if name.lower().endswith((".parquet", ".pq")) else ".csv"


@dataclasses.dataclass
class _Received:
    """One upload as received: what the refusals and the result are stored with."""

    id: str
    name: str
    data: bytes
    content_type: str
    party: str | None
    counterparty: str
    version: str
    mpor: int
    currency: str
    created: int


def _failures(failures: Iterable[RowFailure], path: str, name: str) -> list[RowFailure]:
    return [dataclasses.replace(f, source=name) if f.source == path else f for f in failures]


def _rejected_rows(failures: Sequence[RowFailure]) -> list[RejectedRow]:
    return [
        RejectedRow(line=f.line, field=f.field, reason=f.reason, raw=f.raw, message=str(f))
        for f in failures
    ]


def _margin(received: _Received) -> tuple[SimmRun, list[RowFailure]]:
    """``simm_of_crif`` on the upload, written to a private temporary file; failures name
    the upload. ServiceError 422 when the file as a whole is refused."""
    with tempfile.TemporaryDirectory(prefix="mf-crif-") as folder:  # made 0700
        path = Path(folder) / f"crif{_suffix(received.name)}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(received.data)
        try:
            run = simm_of_crif(
                path, version=received.version, mpor=received.mpor, currency=received.currency
            )
        except ValidationError as exc:
            # input errors name the temporary file: name the upload instead, once
            reason = exc.reason.replace(str(path), received.name)
            if exc.field in ("file", str(path)):  # the file itself (empty, unreadable)
                reason = reason.removeprefix(f"{received.name}: ")
                raise ServiceError(422, f"{received.name}: {reason}", field="file") from None
            reason = reason.removeprefix(f"{received.name}:1: ")
            reason = f"{received.name}: {exc.field}: {reason}"
            raise ServiceError(422, reason, field=exc.field) from None
        except MarginflowError as exc:
            text = str(exc).replace(str(path), received.name).splitlines()[0]
            raise ServiceError(422, f"{received.name}: {text}", field="file") from None
        return run, _failures(run.failures, str(path), received.name)


def _check_settings(caller: Caller, received: _Received) -> None:
    versions = available_versions()
    if received.version not in versions:
        raise ServiceError(
            422,
            MSG_VERSION.format(value=received.version, choices=", ".join(versions)),
            field="version",
        )
    if received.mpor not in (10, 1):
        raise ServiceError(422, MSG_MPOR.format(value=received.mpor), field="mpor")
    if not _CURRENCY.fullmatch(received.currency):
        raise ServiceError(422, MSG_CURRENCY.format(value=received.currency), field="currency")
    for field, value in (("party", received.party), ("counterparty", received.counterparty)):
        if value and not _PARTY.fullmatch(value):
            raise ServiceError(422, MSG_PARTY, field=field)
    member = caller.principal.member
    if member is not None and received.party != member:
        raise ServiceError(403, MSG_OWN_PARTY.format(member=member), field="party")


def _settings_detail(received: _Received) -> dict[str, Any]:
    return {
        "party": received.party,
        "counterparty": received.counterparty,
        "version": received.version,
        "mpor": received.mpor,
        "currency": received.currency,
    }


def _keep_rejected(caller: Caller, received: _Received, error: ServiceError) -> None:
    # a member's refused upload is its member's, whatever party it asked for
    member = caller.principal.member or received.party
    detail = {
        **_settings_detail(received),
        "party": member,
        "requested_party": received.party,
        "error": {"status": error.status, "field": error.field, "reason": error.reason},
    }
    seal(
        caller.ctx.blobs,
        caller.ctx.secrets.data_keys,
        blob_id=received.id,
        kind=REJECTED,
        owner=caller.username,
        member=member,
        name=received.name,
        content_type=received.content_type,
        data=received.data,
        detail=detail,
        created_time=received.created,
    )
    caller.audit(
        "simm.upload",
        outcome="rejected",
        subject=received.id,
        member=member,
        detail={
            "name": received.name,
            "bytes": len(received.data),
            "field": error.field,
            "reason": error.reason,
        },
    )


def _upload_of(blob: Blob) -> Upload:
    detail = json.loads(blob.detail)
    error = detail.get("error")
    return Upload(
        id=blob.id,
        name=blob.name,
        created=iso(blob.created_time),
        status="accepted" if blob.kind == ACCEPTED else "rejected",
        owner=blob.owner,
        party=detail.get("party"),
        counterparty=detail.get("counterparty", ""),
        version=detail.get("version", ""),
        mpor=int(detail.get("mpor", 10)),
        currency=detail.get("currency", ""),
        size=blob.size,
        portfolios=[SimmPortfolio(**p) for p in detail.get("portfolios", [])],
        rejected=[RejectedRow(**r) for r in detail.get("rejected", [])],
        rows=int(detail.get("rows", 0)),
        rejected_lines=int(detail.get("rejected_lines", 0)),
        notes=list(detail.get("notes", [])),
        error=UploadError(field=error.get("field"), reason=error["reason"]) if error else None,
    )


@router.post(
    "/uploads",
    status_code=201,
    response_model=Upload,
    responses={413: {"description": "the upload is over the limit"}},
)
def upload(
    request: Request,
    caller: Uploader,
    file: Annotated[UploadFile, File(description="a CRIF: CSV, or Parquet by its name")],
    version: Annotated[
        str | None, Form(max_length=32, description="ISDA SIMM version (default: newest)")
    ] = None,
    mpor: Annotated[int, Form(description="margin period of risk in days: 10 or 1")] = 10,
    currency: Annotated[str, Form(max_length=3)] = "USD",
    party: Annotated[
        str | None,
        Form(max_length=64, description="the member the upload is for (your own if a member)"),
    ] = None,
    counterparty: Annotated[str, Form(max_length=64)] = "",
) -> Upload:
    """Margin an uploaded CRIF as ``marginflow simm`` does: SIMM (and Schedule) both ways
    per portfolio with the breakdown; rows that fail validation are listed and the rest
    computed. 422 naming ``name:line: field`` when no row can be used."""
    heavy(request, caller)
    received = _Received(
        id=f"CRIF-{uuid.uuid4().hex[:16]}",
        name=safe_name(file.filename),
        data=file.file.read(),
        content_type=(file.content_type or "text/csv")[:100],
        party=party or caller.principal.member,
        counterparty=counterparty,
        version=version or available_versions()[-1],
        mpor=mpor,
        currency=currency,
        created=now_ns(),
    )
    try:
        _check_settings(caller, received)
        run, failures = _margin(received)
        if run.valid_rows == 0:
            first = failures[0] if failures else None
            raise ServiceError(
                422,
                MSG_NO_VALID_ROW.format(
                    first=first or f"{received.name}: no data row", lines=run.rejected_lines
                ),
                field=first.field if first else "file",
            )
    except ServiceError as error:
        _keep_rejected(caller, received, error)
        headers = {**(error.headers or {}), "X-Upload-Id": received.id}
        raise ServiceError(error.status, error.reason, field=error.field, headers=headers) from None
    portfolios = portfolios_of(run, received.party, received.counterparty)
    rejected = _rejected_rows(failures)
    detail: dict[str, Any] = {
        **_settings_detail(received),
        "version": run.report.version,
        "portfolios": [p.model_dump() for p in portfolios],
        "rejected": [r.model_dump() for r in rejected],
        "rows": run.valid_rows,
        "rejected_lines": run.rejected_lines,
        "notes": list(run.report.notes),
    }
    seal(
        caller.ctx.blobs,
        caller.ctx.secrets.data_keys,
        blob_id=received.id,
        kind=ACCEPTED,
        owner=caller.username,
        member=received.party,
        name=received.name,
        content_type=received.content_type,
        data=received.data,
        detail=detail,
        created_time=received.created,
    )
    caller.audit(
        "simm.upload",
        subject=received.id,
        member=received.party,
        detail={
            "name": received.name,
            "bytes": len(received.data),
            "rows": run.valid_rows,
            "rejected_lines": run.rejected_lines,
            "portfolios": len(portfolios),
            "version": run.report.version,
        },
    )
    # as _upload_of(the blob) would read it back, without parsing the detail again
    return Upload(
        id=received.id,
        name=received.name,
        created=iso(received.created),
        status="accepted",
        owner=caller.username,
        party=received.party,
        counterparty=received.counterparty,
        version=run.report.version,
        mpor=received.mpor,
        currency=received.currency,
        size=len(received.data),
        portfolios=portfolios,
        rejected=rejected,
        rows=run.valid_rows,
        rejected_lines=run.rejected_lines,
        notes=list(run.report.notes),
    )


# -- reading uploads ---------------------------------------------------------------------------
def _may_export(caller: Caller, fmt: Format) -> None:
    if fmt is not Format.JSON and not caller.principal.can(Permission.EXPORT):
        raise ServiceError(403, MSG_EXPORT, field="format")


def _info(blob: Blob) -> UploadInfo:
    detail = json.loads(blob.detail)
    portfolios = detail.get("portfolios", [])
    error = detail.get("error")
    return UploadInfo(
        id=blob.id,
        name=blob.name,
        created=iso(blob.created_time),
        status="accepted" if blob.kind == ACCEPTED else "rejected",
        owner=blob.owner,
        party=detail.get("party"),
        size=blob.size,
        version=detail.get("version", ""),
        mpor=int(detail.get("mpor", 10)),
        currency=detail.get("currency", ""),
        rows=int(detail.get("rows", 0)),
        rejected_lines=int(detail.get("rejected_lines", 0)),
        portfolios=len(portfolios),
        collect_im=sum(float(p["collect_im"]) for p in portfolios),
        post_im=sum(float(p["post_im"]) for p in portfolios),
        error=error["reason"] if error else None,
    )


@router.get("/uploads", response_model=Page[UploadInfo])
def uploads(
    caller: Reader, limit: Limit = 100, offset: Offset = 0, format: Fmt = Format.JSON
) -> Page[UploadInfo] | Response:
    """The uploads in your scope, newest first, accepted and refused."""
    _may_export(caller, format)
    blobs, total = caller.scope.uploads(limit=limit, offset=offset)
    items = [_info(b) for b in blobs]
    if format is Format.JSON:
        return Page[UploadInfo](items=items, total=total, limit=limit, offset=offset)
    rows = [i.model_dump() for i in items]
    return export(
        caller, rows, columns=UPLOAD_COLUMNS, fmt=format, name="simm-uploads", subject="simm"
    )


@router.get("/uploads/{upload_id}", response_model=Upload)
def upload_result(upload_id: str, caller: Reader) -> Upload:
    """An upload's result (or, for a refused upload, why)."""
    return _upload_of(caller.scope.upload(upload_id))


@router.get(
    "/uploads/{upload_id}/crif",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}, "application/octet-stream": {}}}},
)
def upload_crif(upload_id: str, caller: Reader) -> Response:
    """The uploaded file as it was received, decrypted (audited as privileged access)."""
    blob = caller.scope.upload(upload_id)
    try:
        data = open_blob(caller.ctx.secrets.data_keys, blob)
    except DecryptionError as exc:
        security_event("blob.unreadable", exc.reason, blob=blob.id, kid=exc.kid)
        raise ServiceError(500, MSG_SEALED) from None
    caller.audit(
        "simm.upload.download",
        subject=blob.id,
        member=blob.member,
        security=True,
        detail={"name": blob.name, "bytes": len(data)},
    )
    media = "application/octet-stream" if _suffix(blob.name) == ".parquet" else "text/csv"
    return Response(
        data,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{blob.name}"'},
    )


# -- results: the stream's and each portfolio's history ----------------------------------------
def stream_result(s: StoredSimm) -> SimmResult:
    return SimmResult(
        source="stream",
        portfolio=s.portfolio,
        party=s.party,
        counterparty=s.counterparty,
        business_date=s.business_date,
        time=iso(s.event_time),
        version=s.simm_version,
        mpor=s.mpor_days,
        currency=s.currency,
        collect_im=s.collect_im,
        post_im=s.post_im,
        collect_regulation=s.collect_regulation or None,
        post_regulation=s.post_regulation or None,
        rows=s.rows,
        submission_id=s.submission_id,
        upload_id=None,
        tree=stored_tree(s),
    )


def upload_results(blob: Blob, portfolio: str) -> list[SimmResult]:
    """The results of ``portfolio`` in an accepted upload (one, unless it is named twice)."""
    detail = json.loads(blob.detail)
    day = dt.datetime.fromtimestamp(blob.created_time / 1e9, tz=dt.UTC).date().isoformat()
    return [
        SimmResult(
            source="upload",
            portfolio=p["portfolio"],
            party=p["party"],
            counterparty=p["counterparty"],
            business_date=day,
            time=iso(blob.created_time),
            version=detail["version"],
            mpor=int(detail["mpor"]),
            currency=p["currency"],
            collect_im=p["collect_im"],
            post_im=p["post_im"],
            collect_regulation=p["collect_regulation"],
            post_regulation=p["post_regulation"],
            rows=int(detail["rows"]),
            submission_id=None,
            upload_id=blob.id,
            tree=TreeNode(**p["tree"]),
        )
        for p in detail.get("portfolios", [])
        if p["portfolio"] == portfolio
    ]


def _results_out(
    caller: Caller,
    items: list[SimmResult],
    limit: int,
    offset: int,
    fmt: Format,
    name: str,
) -> Page[SimmResult] | Response:
    if fmt is Format.JSON:
        page = items[offset : offset + limit]
        return Page[SimmResult](items=page, total=len(items), limit=limit, offset=offset)
    rows = [i.model_dump(exclude={"tree"}) for i in items]
    return export(caller, rows, columns=RESULT_COLUMNS, fmt=fmt, name=name, subject=name)


@router.get("/portfolios", response_model=Page[SimmResult])
def portfolios(
    caller: Reader, limit: Limit = 100, offset: Offset = 0, format: Fmt = Format.JSON
) -> Page[SimmResult] | Response:
    """The stream's current SIMM result of each portfolio in your scope (by party,
    portfolio, business date); a download holds every row, without the trees."""
    _may_export(caller, format)
    items = [stream_result(s) for s in caller.scope.simm_results()]
    return _results_out(caller, items, limit, offset, format, "simm-portfolios")


@router.get("/portfolios/{portfolio:path}/history", response_model=Page[SimmResult])
def portfolio_history(
    portfolio: str,
    caller: Reader,
    limit: Limit = 100,
    offset: Offset = 0,
    format: Fmt = Format.JSON,
) -> Page[SimmResult] | Response:
    """Every SIMM result of ``portfolio`` in your scope over time: the stream's (each
    submission) and your uploads naming it, oldest first."""
    _may_export(caller, format)
    stream, blobs = caller.scope.simm_portfolio(portfolio)
    items = [stream_result(s) for s in stream]
    for blob in blobs:
        items.extend(upload_results(blob, portfolio))
    if not items:  # the pre-filter matched another field's text only
        raise NotFoundError("portfolio", portfolio)
    items.sort(key=lambda r: (dt.datetime.fromisoformat(r.time), r.source))
    return _results_out(caller, items, limit, offset, format, f"simm-{safe_name(portfolio)}")
