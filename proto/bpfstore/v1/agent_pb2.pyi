from bpfstore.v1 import plan_pb2 as _plan_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class EngineStatus(_message.Message):
    __slots__ = ("name", "available", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    available: bool
    reason: str
    def __init__(self, name: _Optional[str] = ..., available: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class GetInfoResponse(_message.Message):
    __slots__ = ("version", "node", "kernel", "engines", "default_engine", "limits")
    class LimitsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    KERNEL_FIELD_NUMBER: _ClassVar[int]
    ENGINES_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_ENGINE_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    version: str
    node: str
    kernel: str
    engines: _containers.RepeatedCompositeFieldContainer[EngineStatus]
    default_engine: str
    limits: _containers.ScalarMap[str, int]
    def __init__(self, version: _Optional[str] = ..., node: _Optional[str] = ..., kernel: _Optional[str] = ..., engines: _Optional[_Iterable[_Union[EngineStatus, _Mapping]]] = ..., default_engine: _Optional[str] = ..., limits: _Optional[_Mapping[str, int]] = ...) -> None: ...

class ListDatasetsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListDatasetsResponse(_message.Message):
    __slots__ = ("datasets", "next_page_token")
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    datasets: _containers.RepeatedCompositeFieldContainer[DatasetInfo]
    next_page_token: str
    def __init__(self, datasets: _Optional[_Iterable[_Union[DatasetInfo, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DescribeDatasetRequest(_message.Message):
    __slots__ = ("dataset", "version", "without_statistics")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    WITHOUT_STATISTICS_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    version: int
    without_statistics: bool
    def __init__(self, dataset: _Optional[str] = ..., version: _Optional[int] = ..., without_statistics: _Optional[bool] = ...) -> None: ...

class ColumnStats(_message.Message):
    __slots__ = ("column", "null_count", "min", "max", "has_nan")
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    NULL_COUNT_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    HAS_NAN_FIELD_NUMBER: _ClassVar[int]
    column: str
    null_count: int
    min: _plan_pb2.Literal
    max: _plan_pb2.Literal
    has_nan: bool
    def __init__(self, column: _Optional[str] = ..., null_count: _Optional[int] = ..., min: _Optional[_Union[_plan_pb2.Literal, _Mapping]] = ..., max: _Optional[_Union[_plan_pb2.Literal, _Mapping]] = ..., has_nan: _Optional[bool] = ...) -> None: ...

class PartitionInfo(_message.Message):
    __slots__ = ("id", "rows", "bytes", "stats", "replicas", "checksum")
    ID_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    id: str
    rows: int
    bytes: int
    stats: _containers.RepeatedCompositeFieldContainer[ColumnStats]
    replicas: _containers.RepeatedScalarFieldContainer[str]
    checksum: str
    def __init__(self, id: _Optional[str] = ..., rows: _Optional[int] = ..., bytes: _Optional[int] = ..., stats: _Optional[_Iterable[_Union[ColumnStats, _Mapping]]] = ..., replicas: _Optional[_Iterable[str]] = ..., checksum: _Optional[str] = ...) -> None: ...

class DatasetInfo(_message.Message):
    __slots__ = ("name", "arrow_schema", "version", "partitions", "created", "txn", "pending_version", "pending_txn")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARROW_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    TXN_FIELD_NUMBER: _ClassVar[int]
    PENDING_VERSION_FIELD_NUMBER: _ClassVar[int]
    PENDING_TXN_FIELD_NUMBER: _ClassVar[int]
    name: str
    arrow_schema: bytes
    version: int
    partitions: _containers.RepeatedCompositeFieldContainer[PartitionInfo]
    created: str
    txn: str
    pending_version: int
    pending_txn: str
    def __init__(self, name: _Optional[str] = ..., arrow_schema: _Optional[bytes] = ..., version: _Optional[int] = ..., partitions: _Optional[_Iterable[_Union[PartitionInfo, _Mapping]]] = ..., created: _Optional[str] = ..., txn: _Optional[str] = ..., pending_version: _Optional[int] = ..., pending_txn: _Optional[str] = ...) -> None: ...

class AggregateRequest(_message.Message):
    __slots__ = ("plan", "dataset_version")
    PLAN_FIELD_NUMBER: _ClassVar[int]
    DATASET_VERSION_FIELD_NUMBER: _ClassVar[int]
    plan: _plan_pb2.Plan
    dataset_version: int
    def __init__(self, plan: _Optional[_Union[_plan_pb2.Plan, _Mapping]] = ..., dataset_version: _Optional[int] = ...) -> None: ...

class PartitionReport(_message.Message):
    __slots__ = ("partition", "engine", "path", "rows_scanned", "rows_matched", "bytes_scanned", "time_ns", "pruned", "note")
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    ROWS_SCANNED_FIELD_NUMBER: _ClassVar[int]
    ROWS_MATCHED_FIELD_NUMBER: _ClassVar[int]
    BYTES_SCANNED_FIELD_NUMBER: _ClassVar[int]
    TIME_NS_FIELD_NUMBER: _ClassVar[int]
    PRUNED_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    partition: str
    engine: str
    path: str
    rows_scanned: int
    rows_matched: int
    bytes_scanned: int
    time_ns: int
    pruned: bool
    note: str
    def __init__(self, partition: _Optional[str] = ..., engine: _Optional[str] = ..., path: _Optional[str] = ..., rows_scanned: _Optional[int] = ..., rows_matched: _Optional[int] = ..., bytes_scanned: _Optional[int] = ..., time_ns: _Optional[int] = ..., pruned: _Optional[bool] = ..., note: _Optional[str] = ...) -> None: ...

class AggregateResponse(_message.Message):
    __slots__ = ("partials", "partitions", "dataset_version")
    PARTIALS_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    DATASET_VERSION_FIELD_NUMBER: _ClassVar[int]
    partials: bytes
    partitions: _containers.RepeatedCompositeFieldContainer[PartitionReport]
    dataset_version: int
    def __init__(self, partials: _Optional[bytes] = ..., partitions: _Optional[_Iterable[_Union[PartitionReport, _Mapping]]] = ..., dataset_version: _Optional[int] = ...) -> None: ...

class ScanRequest(_message.Message):
    __slots__ = ("plan", "batch_rows", "dataset_version", "compression", "pack_bytes")
    PLAN_FIELD_NUMBER: _ClassVar[int]
    BATCH_ROWS_FIELD_NUMBER: _ClassVar[int]
    DATASET_VERSION_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_FIELD_NUMBER: _ClassVar[int]
    PACK_BYTES_FIELD_NUMBER: _ClassVar[int]
    plan: _plan_pb2.Plan
    batch_rows: int
    dataset_version: int
    compression: str
    pack_bytes: int
    def __init__(self, plan: _Optional[_Union[_plan_pb2.Plan, _Mapping]] = ..., batch_rows: _Optional[int] = ..., dataset_version: _Optional[int] = ..., compression: _Optional[str] = ..., pack_bytes: _Optional[int] = ...) -> None: ...

class ScanChunk(_message.Message):
    __slots__ = ("arrow_ipc", "report", "spans")
    ARROW_IPC_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    SPANS_FIELD_NUMBER: _ClassVar[int]
    arrow_ipc: bytes
    report: PartitionReport
    spans: _containers.RepeatedCompositeFieldContainer[ScanSpan]
    def __init__(self, arrow_ipc: _Optional[bytes] = ..., report: _Optional[_Union[PartitionReport, _Mapping]] = ..., spans: _Optional[_Iterable[_Union[ScanSpan, _Mapping]]] = ...) -> None: ...

class ScanSpan(_message.Message):
    __slots__ = ("batches", "report")
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    batches: int
    report: PartitionReport
    def __init__(self, batches: _Optional[int] = ..., report: _Optional[_Union[PartitionReport, _Mapping]] = ...) -> None: ...

class WriteChunk(_message.Message):
    __slots__ = ("dataset", "partition", "overwrite", "replicas", "arrow_ipc", "txn")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    OVERWRITE_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    ARROW_IPC_FIELD_NUMBER: _ClassVar[int]
    TXN_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    partition: str
    overwrite: bool
    replicas: _containers.RepeatedScalarFieldContainer[str]
    arrow_ipc: bytes
    txn: str
    def __init__(self, dataset: _Optional[str] = ..., partition: _Optional[str] = ..., overwrite: _Optional[bool] = ..., replicas: _Optional[_Iterable[str]] = ..., arrow_ipc: _Optional[bytes] = ..., txn: _Optional[str] = ...) -> None: ...

class WriteResponse(_message.Message):
    __slots__ = ("dataset", "partitions", "rows", "version")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    partitions: _containers.RepeatedScalarFieldContainer[str]
    rows: int
    version: int
    def __init__(self, dataset: _Optional[str] = ..., partitions: _Optional[_Iterable[str]] = ..., rows: _Optional[int] = ..., version: _Optional[int] = ...) -> None: ...

class PrepareWriteRequest(_message.Message):
    __slots__ = ("dataset", "txn", "version", "overwrite", "partitions", "arrow_schema", "primary")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    TXN_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    OVERWRITE_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    ARROW_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    txn: str
    version: int
    overwrite: bool
    partitions: _containers.RepeatedScalarFieldContainer[str]
    arrow_schema: bytes
    primary: str
    def __init__(self, dataset: _Optional[str] = ..., txn: _Optional[str] = ..., version: _Optional[int] = ..., overwrite: _Optional[bool] = ..., partitions: _Optional[_Iterable[str]] = ..., arrow_schema: _Optional[bytes] = ..., primary: _Optional[str] = ...) -> None: ...

class PrepareWriteResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    def __init__(self, version: _Optional[int] = ...) -> None: ...

class CommitWriteRequest(_message.Message):
    __slots__ = ("dataset", "txn", "abort")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    TXN_FIELD_NUMBER: _ClassVar[int]
    ABORT_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    txn: str
    abort: bool
    def __init__(self, dataset: _Optional[str] = ..., txn: _Optional[str] = ..., abort: _Optional[bool] = ...) -> None: ...

class CommitWriteResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    def __init__(self, version: _Optional[int] = ...) -> None: ...

class WriteStatusRequest(_message.Message):
    __slots__ = ("dataset", "txn")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    TXN_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    txn: str
    def __init__(self, dataset: _Optional[str] = ..., txn: _Optional[str] = ...) -> None: ...

class WriteStatusResponse(_message.Message):
    __slots__ = ("state",)
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        UNKNOWN: _ClassVar[WriteStatusResponse.State]
        PREPARED: _ClassVar[WriteStatusResponse.State]
        COMMITTED: _ClassVar[WriteStatusResponse.State]
    UNKNOWN: WriteStatusResponse.State
    PREPARED: WriteStatusResponse.State
    COMMITTED: WriteStatusResponse.State
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: WriteStatusResponse.State
    def __init__(self, state: _Optional[_Union[WriteStatusResponse.State, str]] = ...) -> None: ...

class DropDatasetRequest(_message.Message):
    __slots__ = ("dataset",)
    DATASET_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    def __init__(self, dataset: _Optional[str] = ...) -> None: ...

class DropDatasetResponse(_message.Message):
    __slots__ = ("dropped",)
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    dropped: bool
    def __init__(self, dropped: _Optional[bool] = ...) -> None: ...
