"""`bpfstore-agent`: run a storage agent in the foreground until SIGTERM or Ctrl-C.

`bpfstore-agent hash-token` prints the hash of a tenant's token for the config file."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from .auth import hash_token, new_token
from .config import ENGINES, AgentConfig, default_data_dir
from .config_file import ConfigError, check_config, exposure_warnings, load_config_file
from .logfmt import LogfmtFormatter
from .metrics import serve_metrics
from .server import create_server

log = logging.getLogger("bpfstore.agent")


def parse_args(argv: list[str] | None) -> AgentConfig:
    """Defaults, then the --config file, then the flags given. Each flag's dest is the
    AgentConfig field it sets, so a flag is also a key of the file (config_file.py)."""
    p = argparse.ArgumentParser(prog="bpfstore-agent", description=__doc__)
    p.add_argument("--config", metavar="FILE",
                   help="TOML settings (see deploy/agent.example.toml); flags win over it")
    p.add_argument("--data-dir", default=default_data_dir(),
                   help="where datasets live (default: %(default)s)")
    p.add_argument("--listen", default="127.0.0.1:7340", help="HOST:PORT (default: %(default)s)")
    p.add_argument("--engine", choices=ENGINES, default="auto",
                   help="engine for requests that ask for 'auto' (default: %(default)s)")
    p.add_argument("--workers", type=int, default=8,
                   help="requests computing at once (default: 8; metadata and health aside)")
    p.add_argument("--no-bpf", dest="bpf", action="store_false",
                   help="do not start the in-kernel engine")
    p.add_argument("--bpf-cache-mb", dest="bpf_arena_bytes", type=_mebibytes,
                   default=1024 << 20,
                   help="memory for the bpf engine's arena column cache (default: 1024)")
    p.add_argument("--bpf-threads", type=int, default=0,
                   help="bpf runs at once, over all requests (default: 0 = one per CPU, <= 8)")
    p.add_argument("--tls-cert", default="", metavar="PEM",
                   help="server certificate (chain); with --tls-key the agent speaks TLS only")
    p.add_argument("--tls-key", default="", metavar="PEM", help="the certificate's private key")
    p.add_argument("--tls-client-ca", default="", metavar="PEM",
                   help="mutual TLS: clients must present a certificate signed by this CA")
    p.add_argument("--metrics-listen", default="", metavar="HOST:PORT",
                   help="serve Prometheus metrics at http://HOST:PORT/metrics (default: off)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = p.parse_args(argv)
    fields = set(AgentConfig.__dataclass_fields__)
    values = {k: v for k, v in vars(args).items() if k in fields}  # the flags' defaults
    if args.config:
        values.update(load_config_file(args.config))
    values.update({k: getattr(args, k) for k in _given(p, argv) if k in fields})
    config = AgentConfig(**values)
    check_config(config)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter())  # one logfmt line per event (logfmt.py)
    logging.basicConfig(level=config.log_level, handlers=[handler])
    return config


def _mebibytes(text: str) -> int:
    return int(text) << 20


def _given(parser: argparse.ArgumentParser, argv: list[str] | None) -> set[str]:
    """The dests of the flags on the command line (they win over the file), found by parsing
    again with every dest preset: argparse fills in defaults only for dests not yet set."""
    unset = object()
    preset = argparse.Namespace(**{a.dest: unset for a in parser._actions})
    parser.parse_args(argv, namespace=preset)
    return {k for k, v in vars(preset).items() if v is not unset}


def hash_token_command(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="bpfstore-agent hash-token",
        description="Print the hash of a bearer token for a tenant's `tokens` in the agent's "
                    "config file. The token is read from stdin, so it stays out of shell "
                    "history; --new makes one up and prints it first.")
    p.add_argument("--new", action="store_true", help="print a new random token, then its hash")
    args = p.parse_args(argv)
    if args.new:
        token = new_token()
        print(token)
    else:
        token = sys.stdin.readline().strip()
        if not token:
            print("bpfstore-agent hash-token: no token on stdin", file=sys.stderr)
            return 2
    print(hash_token(token))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["hash-token"]:
        return hash_token_command(argv[1:])
    try:
        config = parse_args(argv)
    except ConfigError as exc:
        print(f"bpfstore-agent: config error: {exc}", file=sys.stderr)
        return 2
    for warning in exposure_warnings(config):
        log.warning("%s", warning)
    try:
        server, port, service = create_server(config)
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1
    if config.metrics_listen:
        try:
            _, metrics_port = serve_metrics(config.metrics_listen, service.metrics)
        except OSError as exc:
            log.error("cannot serve metrics on %s: %s", config.metrics_listen, exc)
            return 1
        log.info("metrics on http://%s:%d/metrics", config.metrics_listen.rpartition(":")[0],
                 metrics_port)
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
