"""``python -m marginflow.sim.loadgen_main``: publish a book's start-of-day positions and
a trading day to a log (what ``marginflow cluster up`` runs as its load generator), with a
few CRIF submissions and approved risk-parameter changes first."""

from __future__ import annotations

import argparse
import sys

from marginflow.sim.loadgen import (
    crif_submissions,
    publish_crif,
    publish_parameter_changes,
    publish_trades,
    replay_day,
    risk_parameter_changes,
)
from marginflow.stream.log import open_log
from marginflow.stream.pipeline import sod_positions
from marginflow.stream.risk_calculator import EngineSpec, start_of_day
from marginflow.stream.topics import Topology


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m marginflow.sim.loadgen_main")
    p.add_argument("--log", required=True)
    p.add_argument("--prefix", default="mf.")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--trades", type=int, default=100_000)
    p.add_argument("--rate", type=float, default=0.0, help="trades per second (0: unlimited)")
    p.add_argument("--market-every", type=int, default=100, help="a price move every N trades")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--chunk", type=int, default=1_000, help="trades per flush")
    p.add_argument("--no-sod", action="store_true", help="skip the start-of-day positions")
    p.add_argument(
        "--crif-portfolios", type=int, default=3, help="CRIF submissions to send (0: none)"
    )
    spec = EngineSpec()
    p.add_argument("--members", type=int, default=spec.members)
    p.add_argument("--accounts", type=int, default=spec.accounts)
    p.add_argument("--underlyings", type=int, default=spec.underlyings)
    p.add_argument("--series", type=int, default=spec.series)
    p.add_argument("--sod-positions", type=int, default=spec.sod_positions)
    p.add_argument("--book-seed", type=int, default=spec.seed)
    args = p.parse_args(argv)
    topology = Topology(partitions=args.partitions, prefix=args.prefix)
    log = open_log(args.log)
    log.create_topics(topology.all())
    book = start_of_day(
        EngineSpec(
            members=args.members,
            accounts=args.accounts,
            underlyings=args.underlyings,
            series=args.series,
            sod_positions=args.sod_positions,
            seed=args.book_seed,
        )
    )
    producer = log.producer()
    if args.crif_portfolios > 0:
        crif = publish_crif(producer, topology, crif_submissions(args.crif_portfolios))
        changes = publish_parameter_changes(producer, topology, risk_parameter_changes())
        print(f"published {crif} CRIF submissions, {changes} risk-parameter changes", flush=True)
    if not args.no_sod:
        sod = publish_trades(producer, topology, sod_positions(book))
        print(f"published {sod} start-of-day positions", flush=True)
    sent = replay_day(
        producer,
        topology,
        book_accounts=book.positions.accounts,
        book_instruments=book.instruments.ids,
        underlyings=book.underlyings.ids,
        trades_count=args.trades,
        rate=args.rate or None,
        market_every=args.market_every,
        seed=args.seed,
        chunk=args.chunk,
    )
    print(f"published {sent} trades", flush=True)
    producer.close()
    log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
