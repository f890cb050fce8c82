"""``python -m marginflow.sim.loadgen_main``: what ``marginflow cluster up`` runs as its load
generator. It publishes a book folder's start-of-day positions, then a trading day: replayed
from files (``--trades FILE``, ``--market FILE``, optionally paced by ``--speed``) or
generated over the book's accounts and series, with price moves from the book's own spots
(``--trades N``); first a few CRIF submissions and approved risk-parameter changes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from marginflow.cli.output import say
from marginflow.core.errors import MarginflowError
from marginflow.io.book import load_book
from marginflow.sim.loadgen import crif_submissions, replay_day, risk_parameter_changes
from marginflow.stream.log import open_log
from marginflow.stream.publish import (
    publish_crif,
    publish_parameter_changes,
    publish_trades,
    sod_positions,
)
from marginflow.stream.sources import Replay, read_market, read_trades, replay
from marginflow.stream.topics import Topology


def count_or_file(text: str) -> int | Path:
    """``--trades``: a number of generated trades, or a trades file to replay."""
    if text.isdigit():
        return int(text)
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text!r} is neither a number of trades nor a file")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m marginflow.sim.loadgen_main")
    p.add_argument("--log", required=True)
    p.add_argument("--prefix", default="mf.")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--book", type=Path, required=True, help="book folder")
    p.add_argument(
        "--trades", type=count_or_file, default=100_000, help="generated trades, or a file"
    )
    p.add_argument("--market", type=Path, default=None, help="market file to replay")
    p.add_argument("--speed", type=float, default=None, help="replay at X times real time")
    p.add_argument("--rate", type=float, default=0.0, help="trades per second (0: unlimited)")
    p.add_argument("--market-every", type=int, default=100, help="a price move every N trades")
    p.add_argument(
        "--sweep",
        action="store_true",
        help="moves take the underlyings in turn (each moves once per U moves), not at random",
    )
    p.add_argument(
        "--vol-share", type=float, default=0.0, help="share of moves that also send a vol tick"
    )
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--chunk", type=int, default=1_000, help="trades per flush")
    p.add_argument("--no-sod", action="store_true", help="skip the start-of-day positions")
    p.add_argument(
        "--crif-portfolios", type=int, default=3, help="CRIF submissions to send (0: none)"
    )
    args = p.parse_args(argv)
    topology = Topology(partitions=args.partitions, prefix=args.prefix)
    try:
        book = load_book(args.book).book
        files = Replay()
        if isinstance(args.trades, Path):
            files = read_trades(args.trades)
        if args.market is not None:
            market = read_market(args.market)
            files.market, files.failures = market.market, files.failures + market.failures
    except MarginflowError as exc:
        say(f"loadgen: {exc}", err=True)
        return 2
    for f in files.failures:
        say(f"rejected: {f}")
    log = open_log(args.log)
    log.create_topics(topology.all())
    producer = log.producer()
    if args.crif_portfolios > 0:
        crif = publish_crif(producer, topology, crif_submissions(args.crif_portfolios))
        changes = publish_parameter_changes(producer, topology, risk_parameter_changes())
        say(f"published {crif} CRIF submissions, {changes} risk-parameter changes")
    if not args.no_sod:
        sod = publish_trades(producer, topology, sod_positions(book))
        say(f"published {sod} start-of-day positions")
    if isinstance(args.trades, Path) or args.market is not None:
        stats = replay(
            producer, topology, trades=files.trades, market=files.market, speed=args.speed
        )
        say(f"replayed {stats.trades} trades and {stats.market} market events")
    else:
        sent = replay_day(
            producer,
            topology,
            book=book,
            trades_count=args.trades,
            rate=args.rate or None,
            market_every=args.market_every,
            seed=args.seed,
            chunk=args.chunk,
            sweep=args.sweep,
            vol_share=args.vol_share,
        )
        say(f"published {sent} trades")
    producer.close()
    log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
