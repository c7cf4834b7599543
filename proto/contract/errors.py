"""Typed errors shared by the connector and the agent, and the one table between them and
gRPC status codes (`STATUS_CODES`, codes named by their string names: this layer imports no
grpc). The agent answers a class with its code (node_agent/rpc_errors.py); the client raises
the class again for the code (connector/client.py), so callers catch the same types on both
sides.
"""


class BpfstoreError(Exception):
    """Base of every bpfstore error."""


class Unsupported(BpfstoreError):
    """A plan or expression this engine cannot run; the caller falls back."""


class PlanInvalid(BpfstoreError):
    """A malformed or ill-typed plan; the message names the bad part."""


class DatasetNotFound(BpfstoreError):
    """An unknown dataset or partition."""


class DatasetExists(BpfstoreError):
    """A write that would clash with existing data (e.g. a partition id already taken)."""


class ArithmeticOverflow(BpfstoreError):
    """A value overflowed its type (or divided by zero) under overflow mode ERROR."""


class VerifierRejected(BpfstoreError):
    """The kernel's verifier refused a generated program; the agent falls back to arrow."""

    def __init__(self, summary: str, log: str = "") -> None:
        super().__init__(summary)
        self.log = log


class ResourceExhausted(BpfstoreError):
    """A request over a configured limit (size, concurrency)."""


class PartitionCorrupt(BpfstoreError):
    """A partition file that no longer matches the checksum recorded at its commit."""


class PartitionUnavailable(BpfstoreError):
    """No live replica could serve these partitions: the query fails rather than go partial.
    Only the client concludes this (from its agents' answers), so it has no status code."""

    def __init__(self, dataset: str, partitions: list[str], causes: list[str]) -> None:
        names = ", ".join(sorted(partitions))
        super().__init__(
            f"dataset {dataset!r}: no replica could serve partition(s) {names}: "
            + "; ".join(causes)
        )
        self.dataset = dataset
        self.partitions = partitions


class Unauthenticated(BpfstoreError):
    """No valid bearer token: the agent requires one (it has tenants configured)."""


class PermissionDenied(BpfstoreError):
    """The caller's tenant has no grant for this dataset and action. The agent gives the same
    answer whether or not the dataset exists, so a tenant never learns about others' data."""


class AgentUnavailable(BpfstoreError):
    """An agent could not be reached (down, shutting down, or the deadline passed): the client
    moves its partitions to another replica."""


class DeadlineExceeded(AgentUnavailable):
    """A request ran past its deadline (the client's, or the agent's max_deadline_seconds)."""


ECHO_LIMIT = 80  # characters of a client's value an error message repeats


def shown(value: object, limit: int = ECHO_LIMIT) -> str:
    """`repr(value)` cut to `limit` characters: error messages never echo a huge input whole."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
class VersionGone(BpfstoreError):
    """The dataset version a query pinned is no longer kept by an agent (superseded longer
    ago than its retention, or the agent restarted): re-plan the query on the current one."""


class WriteConflict(BpfstoreError):
    """Another write to the same dataset is committing, or committed a newer version first;
    nothing of this write became visible, so it can be retried."""


# One code per class and one class per code, so each direction is the other's inverse.
STATUS_CODES: dict[type[BpfstoreError], str] = {
    Unsupported: "UNIMPLEMENTED",
    PlanInvalid: "INVALID_ARGUMENT",
    DatasetNotFound: "NOT_FOUND",
    DatasetExists: "ALREADY_EXISTS",
    ArithmeticOverflow: "OUT_OF_RANGE",
    ResourceExhausted: "RESOURCE_EXHAUSTED",
    AgentUnavailable: "UNAVAILABLE",
    DeadlineExceeded: "DEADLINE_EXCEEDED",
    PartitionCorrupt: "DATA_LOSS",
    Unauthenticated: "UNAUTHENTICATED",
    PermissionDenied: "PERMISSION_DENIED",
    VersionGone: "ABORTED",
    WriteConflict: "FAILED_PRECONDITION",
}
_FROM_CODE = {code: cls for cls, code in STATUS_CODES.items()}
# The agent answers CANCELLED (with no typed error) while it shuts down (SIGTERM drain) or
# when its client went away; the client never cancels its own calls, so for the client it is
# an agent going away: its partitions move to a replica.
_FROM_CODE["CANCELLED"] = AgentUnavailable


def status_code(exc: BaseException) -> str | None:
    """The status code name the agent answers `exc` with (its nearest listed class), if any."""
    for cls in type(exc).__mro__:
        if cls in STATUS_CODES:
            return STATUS_CODES[cls]
    return None


def error_class(code: str) -> type[BpfstoreError]:
    """The class the client raises for a status code name (BpfstoreError for the others)."""
    return _FROM_CODE.get(code, BpfstoreError)
