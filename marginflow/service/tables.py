"""Tables out: a list endpoint answers JSON by default, and CSV or Parquet with
``?format=csv|parquet``. A CSV or Parquet download is an export: it is audited (who, what,
how many rows) and an AES-GCM encrypted copy is kept, so an auditor can see exactly what
left the platform.

CSV cells that a spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``,
``@``, tab or carriage return) are prefixed with ``'``; numbers are written as numbers
(:func:`marginflow.core.text.spreadsheet_cell`, shared with the CLI's CSV files).
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from fastapi import Response

from marginflow.core.text import spreadsheet_cell
from marginflow.service.auth import Caller
from marginflow.service.context import now_ns
from marginflow.service.errors import ServiceError
from marginflow.service.roles import Permission
from marginflow.service.sealed import seal


class Format(StrEnum):
    JSON = "json"
    CSV = "csv"
    PARQUET = "parquet"


MEDIA = {Format.CSV: "text/csv; charset=utf-8", Format.PARQUET: "application/vnd.apache.parquet"}


def to_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([spreadsheet_cell(row.get(c)) for c in columns])
    return out.getvalue().encode()


def to_parquet(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({c: [row.get(c) for row in rows] for c in columns})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def export(
    caller: Caller,
    rows: Sequence[Mapping[str, Any]],
    *,
    columns: Sequence[str],
    fmt: Format,
    name: str,
    subject: str,
) -> Response:
    """``rows`` as a CSV or Parquet download: audited, with an encrypted copy kept. A
    download is an export whatever endpoint serves it: it needs the export permission."""
    if not caller.principal.can(Permission.EXPORT):
        caller.audit("data.export", subject=subject, outcome="denied", security=True)
        raise ServiceError(403, "your roles do not allow export", field="format")
    data = to_csv(rows, columns) if fmt is Format.CSV else to_parquet(rows, columns)
    blob_id = f"EXP-{uuid.uuid4().hex[:16]}"
    filename = f"{name}.{fmt.value}"
    seal(
        caller.ctx.blobs,
        caller.ctx.secrets.data_keys,
        blob_id=blob_id,
        kind="export",
        owner=caller.username,
        member=caller.principal.member,
        name=filename,
        content_type=MEDIA[fmt],
        data=data,
        detail={"subject": subject, "rows": len(rows)},
        created_time=now_ns(),
    )
    caller.audit(
        "data.export",
        subject=subject,
        security=True,
        detail={"format": fmt.value, "rows": len(rows), "blob": blob_id, "bytes": len(data)},
    )
    return Response(
        data,
        media_type=MEDIA[fmt],
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
