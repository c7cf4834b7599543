"""Typed errors shared by the connector and the agent.

The agent maps each class to one gRPC status code (node_agent/rpc_errors.py); the client maps
status codes back to these classes, so callers catch the same types on both sides.
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
    """No live replica could serve these partitions: the query fails rather than go partial."""

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


class DeadlineExceeded(BpfstoreError):
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
