"""The SIMM page in Chromium: a CRIF uploaded from the file picker, IM both ways per
portfolio with its breakdown tree, refused rows as ``file:line: field: reason``, and the
upload in the list of earlier ones."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx

from marginflow.sim.synthetic_crif import CrifSpec, generate, write_crif_csv
from tests.service.browser.conftest import Session, Web


def test_a_crif_upload_shows_im_its_tree_and_the_rows_refused(
    signed_in: Callable[..., Session], web: Web, tmp_path: Path
) -> None:
    paths = httpx.get(f"{web.url}/api/v1/openapi.json").json()["paths"]
    assert "/api/v1/simm/uploads" in paths
    rows = generate(CrifSpec(rows=60, portfolios=2, seed=3))
    rows[3]["Bucket"] = "99"
    rows[3]["RiskType"] = "Risk_Equity"
    crif = write_crif_csv(rows, tmp_path / "desk-7.csv")
    s = signed_in("bank-a.user", then="/simm")
    s.page.set_input_files("#crif", str(crif))
    s.page.fill("#simm-version", "2.6")
    s.page.click("#upload")
    s.page.locator("#simm-result:not([hidden])").wait_for(timeout=120_000)
    portfolios = s.page.locator("#portfolios tbody tr[data-portfolio]")
    assert portfolios.count() == 2
    first = portfolios.first
    assert first.locator("td.collect").inner_text().replace(",", "").isdigit()
    first.locator("button").click()
    tree = s.page.locator("#portfolios tr.breakdown .tree")
    tree.wait_for()
    assert "collect" in tree.inner_text()
    refused = s.page.inner_text("#rejected")
    assert refused.startswith("desk-7.csv:5: Bucket: bucket '99' is outside the buckets")
    s.page.locator("#uploads tbody tr[data-upload]", has_text="desk-7.csv").wait_for()
    s.shot("16-simm-upload")
    assert s.csp_violations() == []
