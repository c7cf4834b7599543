"""The error table, both directions: every typed error an agent raises reaches the client as the
same class, through a real gRPC server on loopback (rpc_errors on the agent side, the client's
_error on the other)."""

from __future__ import annotations

from concurrent import futures

import grpc
import pytest

from bpfstore.connector.client import _error
from bpfstore.contract import errors
from bpfstore.contract.errors import STATUS_CODES, AgentUnavailable, BpfstoreError
from bpfstore.node_agent.rpc_errors import INTERNAL_MESSAGE, rpc_errors

_CLASSES = {cls.__name__: cls for cls in vars(errors).values()
            if isinstance(cls, type) and issubclass(cls, BpfstoreError)}
# Never answered with a code of their own: the client concludes PartitionUnavailable from its
# agents' answers, a verifier rejection falls back inside the agent, the base is INTERNAL.
_NO_CODE = {"BpfstoreError", "PartitionUnavailable", "VerifierRejected"}


def _raise(request: bytes, context: grpc.ServicerContext) -> bytes:
    with rpc_errors(context, "Raise"):
        cls = _CLASSES[request.decode()]
        if cls is errors.PartitionUnavailable:
            raise cls("ds", ["p1"], ["the agent's words"])
        raise cls("the agent's words")
    return b""


@pytest.fixture(scope="module")
def call():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handler = grpc.unary_unary_rpc_method_handler(_raise)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("t", {"Raise": handler})])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    method = channel.unary_unary("/t/Raise")

    def raised(name: str) -> BpfstoreError:
        with pytest.raises(grpc.RpcError) as failure:
            method(name.encode(), timeout=10)
        return _error("agent-1", failure.value)
    yield raised
    channel.close()
    server.stop(None)


@pytest.mark.parametrize("name", sorted(_CLASSES))
def test_every_class_round_trips(call, name: str) -> None:
    got = call(name)
    if name in _NO_CODE:
        assert type(got) is BpfstoreError and INTERNAL_MESSAGE in str(got)
    else:
        assert type(got) is _CLASSES[name]
        assert "the agent's words" in str(got)
        # an agent not reached (or too slow) is named: the client fails over from it
        assert ("agent-1" in str(got)) == issubclass(got.__class__, AgentUnavailable)


def test_every_class_has_a_code_or_says_why() -> None:
    listed = {cls.__name__ for cls in STATUS_CODES}
    assert set(_CLASSES) - listed == _NO_CODE
    assert len(set(STATUS_CODES.values())) == len(STATUS_CODES)  # one class per code
    assert all(code in grpc.StatusCode.__members__ for code in STATUS_CODES.values())


@pytest.mark.parametrize("code, cls", [("CANCELLED", AgentUnavailable),
                                       ("UNKNOWN", BpfstoreError), ("INTERNAL", BpfstoreError)])
def test_codes_without_a_class_of_their_own(code: str, cls: type) -> None:
    assert errors.error_class(code) is cls
