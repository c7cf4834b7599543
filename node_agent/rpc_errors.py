"""Typed errors to gRPC status codes through the contract's one table (errors.STATUS_CODES);
internal details stay in the log."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import grpc
import pyarrow as pa

from bpfstore.contract.errors import BpfstoreError, status_code

log = logging.getLogger("bpfstore.agent")

INTERNAL_MESSAGE = "internal error in the agent (details are in its log)"
MESSAGE_LIMIT = 1000  # characters: a status message travels in headers (8 KiB by default)


def status_for(exc: BaseException) -> grpc.StatusCode | None:
    """The status for a typed error, from the contract's one table (errors.STATUS_CODES)."""
    name = status_code(exc)
    return None if name is None else grpc.StatusCode[name]


def capped(message: str) -> str:
    """Every status message, cut so that no echoed input can outgrow the response headers."""
    if len(message) <= MESSAGE_LIMIT:
        return message
    return f"{message[:MESSAGE_LIMIT]}... ({len(message) - MESSAGE_LIMIT} more characters)"


@contextlib.contextmanager
def rpc_errors(context: grpc.ServicerContext, method: str) -> Iterator[None]:
    """Map whatever the body raises to one status code; never leak internals to the client."""
    try:
        yield
    except BpfstoreError as exc:
        code = status_for(exc) or grpc.StatusCode.INTERNAL
        log.info("%s failed: %s: %s", method, code.name, exc)
        context.abort(code, capped(str(exc)) if code is not grpc.StatusCode.INTERNAL
                      else INTERNAL_MESSAGE)
    except pa.ArrowNotImplementedError as exc:
        log.info("%s: not supported by Arrow: %s", method, exc)
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, capped(f"operation not supported: {exc}"))
    except grpc.RpcError:  # reading a request stream whose client went away (killed, cancelled)
        log.info("%s: the client went away mid-stream", method)
        context.abort(grpc.StatusCode.CANCELLED, "the client went away")
    except Exception:
        if context.code() is not None:  # already aborted (abort raises a plain Exception)
            raise
        log.exception("%s failed unexpectedly", method)
        context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)
