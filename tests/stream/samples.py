"""One canonical example of every event type, shared by the golden-file and codec tests."""

from __future__ import annotations

from marginflow.core.ids import AccountId, InstrumentId, MemberId, UnderlyingId
from marginflow.stream import events as ev

T0 = 1_717_000_000_000_000_000  # 2024-05-29T16:26:40Z in ns


def samples() -> dict[str, ev.Event]:
    acc, mem = AccountId("ACC-001"), MemberId("MEM-01")
    inst, und = InstrumentId("SPY 2024-06-21 C 530"), UnderlyingId("SPY")
    return {
        "trade": ev.Trade(
            trade_id="T-000001",
            account=acc,
            instrument=inst,
            quantity=-25,
            price=4.35,
            event_time=T0,
        ),
        "position_snapshot": ev.PositionSnapshot(
            account=acc, instrument=inst, quantity=120, business_date="2024-05-29", event_time=T0
        ),
        "price": ev.PriceUpdate(underlying=und, price=527.37, event_time=T0),
        "vol": ev.VolUpdate(underlying=und, vol=0.1325, event_time=T0),
        "instrument": ev.InstrumentRef(
            id=inst,
            underlying=und,
            kind="call",
            multiplier=100.0,
            strike=530.0,
            expiry="2024-06-21",
            style="american",
            event_time=T0,
        ),
        "account": ev.AccountRef(id=acc, member=mem, account_type="client", event_time=T0),
        "member": ev.MemberRef(id=mem, name="Example Clearing LLC", event_time=T0),
        "date_roll": ev.DateRoll(business_date="2024-05-30", event_time=T0),
        "risk_parameter": ev.RiskParameterChange(
            change_id="RP-7",
            model="es",
            parameter="confidence",
            value=0.99,
            requested_by="alice",
            approved_by="bob",
            effective_time=T0,
            event_time=T0,
        ),
        "crif": ev.CrifSubmission(
            submission_id="CRIF-1",
            party="BANK-A",
            counterparty="BANK-B",
            portfolio="PF-1",
            business_date="2024-05-29",
            rows=(
                ev.CrifRow(
                    product_class="RatesFX",
                    risk_type="Risk_IRCurve",
                    qualifier="USD",
                    bucket="1",
                    label1="2w",
                    label2="OIS",
                    amount=-12345.5,
                    amount_currency="USD",
                    amount_usd=-12345.5,
                ),
            ),
            event_time=T0,
        ),
        "account_positions": ev.AccountPositions(
            account=acc,
            instruments=(inst, InstrumentId("SPY")),
            quantities=(95, 0),
            source_partition=2,
            source_offset=1041,
            event_time=T0,
        ),
        "account_margin": ev.AccountMargin(
            account=acc,
            member=mem,
            margin=18250.75,
            model="es",
            source_partition=2,
            position_version=1041,
            market_offset=77,
            event_time=T0,
            computed_time=T0 + 3_000_000,
            es=17100.5,
            apc=0.0,
            concentration=1150.25,
            var=15020.0,
            driver="2008-10-15",
            settings="9f2c" * 16,
            market_from=70,
            market_ticks=9,
            market_moves=4,
        ),
        "member_margin_partial": ev.MemberMarginPartial(
            member=mem,
            margin=1.5e6,
            accounts=12,
            source_partition=2,
            source_offset=310,
            event_time=T0,
        ),
        "simm_result": ev.SimmResult(
            submission_id="CRIF-1",
            party="BANK-A",
            counterparty="BANK-B",
            portfolio="PF-1",
            business_date="2024-05-29",
            simm_version="2.8+2512",
            mpor_days=10,
            currency="USD",
            collect_im=1_234_567.25,
            post_im=987_654.5,
            collect_regulation="SEC",
            post_regulation="",
            breakdown=(
                ev.SimmLine(side="collect", model="SIMM", margin=1_234_567.25),
                ev.SimmLine(
                    side="collect",
                    model="SIMM",
                    product_class="RatesFX",
                    risk_class="InterestRate",
                    margin_type="Delta",
                    margin=1_200_000.0,
                ),
            ),
            rows=1,
            source_partition=2,
            source_offset=17,
            event_time=T0,
            computed_time=T0 + 4_000_000,
        ),
        "dead_letter": ev.DeadLetter(
            source_topic="mf.trades",
            source_partition=0,
            source_offset=12,
            field="quantity",
            reason="must not be 0",
            raw=b"\x81\xa4type\xa5trade",
            event_time=T0,
        ),
    }
