"""The stress report a risk committee reads (``marginflow stress --report``): one HTML file
built from a :class:`~marginflow.app.stress.StressResult` with :class:`.report.Report`.

Sections: provenance (each stress set's name, version and fingerprint, the margin model,
the beta convention); the firm; stress losses by member (bar chart and table); the P&L
distribution of the worst accounts with the margin and the worst scenario marked; the
default-fund sizing (Cover-1 and Cover-2, setting scenario, each member's contribution);
the reverse stress; the worst scenarios; and, when run, the Cover-2 members by day.
"""

from __future__ import annotations

import numpy as np

from marginflow.app.report import Report, chart_text
from marginflow.app.stress import HISTORY_HELD, StressResult

WORST_ACCOUNTS = 3
"""Accounts whose P&L distribution is drawn."""
MEMBERS_CHARTED = 30
"""Members in the bar chart (the largest losses); the table has them all."""


def stress_report(r: StressResult, *, top: int = 20) -> Report:
    """The report of ``r`` (``top``: rows of the scenario and account tables)."""
    sets = "; ".join(f"{s.name} version {s.version}" for s in r.sets)
    meta = [("stress sets", sets)]
    meta += [(f"fingerprint of {s.name}", s.fingerprint) for s in r.sets]
    meta += [
        ("valuation date", r.valuation_date.isoformat()),
        ("scenarios", f"{len(r.labels):,}"),
        ("margin posted", r.margin_title),
        ("market move", r.betas),
    ]
    rep = Report(title=f"Stress test: {sets}", meta=meta)
    _firm(rep, r)
    _members(rep, r)
    _worst_accounts(rep, r)
    _default_fund(rep, r)
    _reverse(rep, r)
    _scenarios(rep, r, top)
    if r.history:
        _history(rep, r)
    return rep


def _firm(rep: Report, r: StressResult) -> None:
    f = r.firm()
    rep.section("Firm")
    rep.paragraph(
        "Loss is minus the scenario P&L. Beyond margin, by account: each account's loss "
        "beyond its own margin, summed (one account's surplus margin does not cover "
        "another's loss). Member-netted: each member's accounts as one portfolio with one "
        "pool of margin."
    )
    rep.table(
        ("measure", "amount", "scenario"),
        [
            ("margin posted", f["margin"], None),
            ("worst loss (gross)", f["gross_loss"], f["gross_loss_scenario"]),
            ("worst loss beyond margin, by account", f["uncovered"], f["uncovered_scenario"]),
            (
                "worst loss beyond margin, member-netted",
                f["uncovered_netted"],
                f["uncovered_netted_scenario"],
            ),
        ],
        table_id="firm",
    )


def _members(rep: Report, r: StressResult) -> None:
    rows = r.members_table()
    rep.section("Stress losses by member")
    shown = sorted(rows, key=lambda m: -m["gross_loss"])[:MEMBERS_CHARTED]
    with rep.figure(
        "Worst stress loss of each member (gross, and beyond margin by account) against the "
        f"margin posted; the {len(shown)} largest losses",
        height=max(3.0, 0.3 * len(shown) + 1.2),
    ) as ax:
        y = np.arange(len(shown))
        h = 0.27
        ax.barh(y - h, [m["gross_loss"] for m in shown], h, label="worst loss (gross)")
        ax.barh(y, [m["uncovered"] for m in shown], h, label="beyond margin")
        ax.barh(y + h, [m["margin"] for m in shown], h, label="margin posted")
        ax.set_yticks(y, [chart_text(m["member"]) for m in shown])
        ax.invert_yaxis()
        ax.set_xlabel("amount (book currency)")
        ax.legend(loc="lower right")
    rep.table(
        (
            "member",
            "accounts",
            "margin",
            "contribution",
            "worst loss",
            "scenario",
            "beyond margin",
            "scenario",
            "member-netted",
        ),
        [
            (
                m["member"],
                m["accounts"],
                m["margin"],
                m["contribution"],
                m["gross_loss"],
                m["gross_loss_scenario"],
                m["uncovered"],
                m["uncovered_scenario"],
                m["uncovered_netted"],
            )
            for m in rows
        ],
        table_id="members",
    )


def _worst_accounts(rep: Report, r: StressResult) -> None:
    worst, scen = r.account_worst
    order = np.argsort(-worst, kind="stable")[:WORST_ACCOUNTS]
    rep.section("P&L distribution of the worst accounts")
    rep.paragraph(
        "Each account's P&L over every stress scenario; the tail beyond its margin (a loss "
        "larger than the margin posted) is shaded, its worst scenario marked."
    )
    for a in order.tolist():
        pnl = r.pnl[a]
        name = r.accounts[a]
        member = r.members[int(r.account_member[a])]
        label = r.labels[int(scen[a])]
        with rep.figure(
            f"Account {name} (member {member}): P&L over {pnl.size:,} scenarios; margin "
            f"{r.margin[a]:,.0f}; worst scenario {label}, loss {worst[a]:,.0f}",
            height=3.0,
        ) as ax:
            ax.hist(pnl, bins=min(60, max(10, pnl.size // 3)), color="#4c72b0")
            ax.axvspan(
                min(float(pnl.min()), -float(r.margin[a])),
                -float(r.margin[a]),
                color="#c44e52",
                alpha=0.15,
                label="loss beyond margin",
            )
            ax.axvline(-float(r.margin[a]), color="#c44e52", ls="--", label="- margin")
            ax.axvline(float(pnl[int(scen[a])]), color="black", label=chart_text(label))
            ax.set_xlabel("scenario P&L (book currency, profit positive)")
            ax.set_ylabel("scenarios")
            ax.set_title(chart_text(f"{name} ({member})"))
            ax.legend(loc="upper right", fontsize="small")


def _default_fund(rep: Report, r: StressResult) -> None:
    rep.section("Default fund sizing")
    rep.paragraph(
        "Cover-k: in each scenario, the sum of the k largest members' losses beyond "
        "margin; the fund is its largest value over the scenarios, set by that scenario. "
        f"The fund is sized at Cover-{r.cover}; contributions: {r.contributions_source}."
    )
    rows = []
    for c in (r.cover1, r.cover2):
        members = ", ".join(
            f"{r.members[m]} ({r.member_uncovered[m, c.scenario]:,.0f})" for m in c.members
        )
        rows.append((f"Cover-{c.k}", c.fund, r.labels[c.scenario], members or "(none)"))
    rep.table(
        ("cover", "fund", "setting scenario", "members (loss beyond margin there)"),
        rows,
        table_id="cover",
    )
    s = r.fund.scenario
    total = float(r.contributions.sum())
    rep.table(
        ("member", "beyond margin in the setting scenario", "contribution", "share"),
        [
            (
                m,
                float(r.member_uncovered[i, s]),
                float(r.contributions[i]),
                f"{r.contributions[i] / total:.1%}" if total > 0 else "",
            )
            for i, m in enumerate(r.members)
        ],
        table_id="contributions",
    )


def _reverse(rep: Report, r: StressResult) -> None:
    if not r.reverse:
        return
    rep.section("Reverse stress")
    rep.paragraph(
        "The smallest market move, down and up, under which a member's losses beyond its "
        "accounts' margins exceed its default-fund contribution. Single names move by their "
        "beta, implied vols by the one-day VIX proxy; grid of 1% moves, then the 0.1% points "
        "inside the first bracket that crosses."
    )
    rows: dict[int, list[str]] = {}
    for mv in r.reverse:
        text = f"{mv.move:+.2%}" if mv.move is not None else f"not within ±{mv.bound:.0%}"
        rows.setdefault(mv.member, ["", ""])[0 if mv.direction == "down" else 1] = text
    mm = r.member_margin
    rep.table(
        ("member", "margin", "contribution", "fall that exhausts", "rise that exhausts"),
        [
            (r.members[m], float(mm[m]), float(r.contributions[m]), d[0], d[1])
            for m, d in sorted(rows.items())
        ],
        table_id="reverse",
    )


def _scenarios(rep: Report, r: StressResult, top: int) -> None:
    rep.section("Worst scenarios")
    scen = sorted(r.scenarios_table(), key=lambda s: -s["uncovered"])[:top]
    rep.table(
        ("scenario", "set", "gross loss", "beyond margin", "Cover-1", "Cover-2"),
        [
            (s["scenario"], s["set"], s["gross_loss"], s["uncovered"], s["cover1"], s["cover2"])
            for s in scen
        ],
        table_id="scenarios",
    )


def _history(rep: Report, r: StressResult) -> None:
    rep.section("Cover-2 members by day")
    rep.paragraph(f"Each day's spots; held constant: {HISTORY_HELD}.")
    days = r.history
    with rep.figure("Cover-1 and Cover-2 fund by day", height=3.0) as ax:
        x = np.arange(len(days))
        ax.plot(x, [d.cover1.fund for d in days], marker="o", label="Cover-1")
        ax.plot(x, [d.cover2.fund for d in days], marker="o", label="Cover-2")
        step = max(1, len(days) // 10)
        ax.set_xticks(x[::step], [d.date.isoformat() for d in days][::step], rotation=30)
        ax.set_ylabel("fund (book currency)")
        ax.legend()
    rep.table(
        ("date", "margin", "Cover-1", "Cover-2", "setting scenario", "Cover-2 members"),
        [
            (
                d.date.isoformat(),
                d.margin,
                d.cover1.fund,
                d.cover2.fund,
                r.labels[d.cover2.scenario],
                ", ".join(r.members[m] for m in d.cover2.members) or "(none)",
            )
            for d in days
        ],
        table_id="history",
    )
