"""`bpfstore-agent`: run a storage agent in the foreground until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from .config import ENGINES, AgentConfig, default_data_dir
from .server import create_server

log = logging.getLogger("bpfstore.agent")


def parse_args(argv: list[str] | None) -> AgentConfig:
    p = argparse.ArgumentParser(prog="bpfstore-agent", description=__doc__)
    p.add_argument("--data-dir", default=default_data_dir(),
                   help="where datasets live (default: %(default)s)")
    p.add_argument("--listen", default="127.0.0.1:7340", help="HOST:PORT (default: %(default)s)")
    p.add_argument("--engine", choices=ENGINES, default="auto",
                   help="engine for requests that ask for 'auto' (default: %(default)s)")
    p.add_argument("--workers", type=int, default=8, help="concurrent requests (default: 8)")
    p.add_argument("--no-bpf", action="store_true", help="do not start the in-kernel engine")
    p.add_argument("--bpf-cache-mb", type=int, default=1024,
                   help="memory for the bpf engine's arena column cache (default: 1024)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = p.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr,
        format="ts=%(asctime)s level=%(levelname)s logger=%(name)s msg=%(message)r")
    return AgentConfig(data_dir=args.data_dir, listen=args.listen, engine=args.engine,
                       workers=args.workers, bpf=not args.no_bpf,
                       bpf_arena_bytes=args.bpf_cache_mb << 20)


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    try:
        server, port, service = create_server(config)
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1
    server.start()
    host = config.listen.rsplit(":", 1)[0]
    engines = ", ".join(f"{s.name}={'yes' if s.available else 'no (' + s.reason + ')'}"
                        for s in service.engines.status)
    log.info("listening on %s:%d data_dir=%s engines: %s", host, port, config.data_dir, engines)
    print(f"bpfstore-agent listening on {host}:{port}", flush=True)

    stopped = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: draining in-flight requests (up to %.0fs)", signum,
                 config.grace_seconds)
        server.stop(config.grace_seconds).wait()
        stopped.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stopped.wait()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
