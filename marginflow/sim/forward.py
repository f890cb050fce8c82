"""A TCP forwarder, run as its own process: ``python -m marginflow.sim.forward PORT TARGET``.

It listens on ``127.0.0.1:PORT`` and joins each connection to ``TARGET`` (``host:port``),
byte for byte. The chaos tests put it between the workers and a broker that advertises
``PORT``, so every client connection goes through it: SIGKILL it and, to every client, the
broker is gone (connections reset, new ones refused); start it again on the same port and
the broker is back, its log intact.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(1 << 16):
            dst.sendall(data)
    except OSError:
        pass
    finally:  # one side ended: end both, as a broker's own close would
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def serve(port: int, target: tuple[str, int]) -> None:
    server = socket.create_server(("127.0.0.1", port))  # SO_REUSEADDR: restart on the port
    while True:
        client, _ = server.accept()
        try:
            upstream = socket.create_connection(target, timeout=5)
        except OSError:
            client.close()
            continue
        upstream.settimeout(None)
        for a, b in ((client, upstream), (upstream, client)):
            for s in (a, b):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=_pipe, args=(a, b), daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m marginflow.sim.forward PORT HOST:PORT", file=sys.stderr)
        return 2
    host, _, port = args[1].rpartition(":")
    serve(int(args[0]), (host, int(port)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
