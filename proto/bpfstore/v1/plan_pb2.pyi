from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OverflowMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OVERFLOW_DEFAULT: _ClassVar[OverflowMode]
    OVERFLOW_ERROR: _ClassVar[OverflowMode]
    OVERFLOW_NULL: _ClassVar[OverflowMode]

class Dialect(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIALECT_SQL: _ClassVar[Dialect]
    DIALECT_PANDAS: _ClassVar[Dialect]

class Engine(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENGINE_AUTO: _ClassVar[Engine]
    ENGINE_ARROW: _ClassVar[Engine]
    ENGINE_BPF: _ClassVar[Engine]
    ENGINE_BCC: _ClassVar[Engine]
    ENGINE_BPF_HOT: _ClassVar[Engine]
    ENGINE_BPF_COLD: _ClassVar[Engine]

class CompareOp(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EQ: _ClassVar[CompareOp]
    NE: _ClassVar[CompareOp]
    LT: _ClassVar[CompareOp]
    LE: _ClassVar[CompareOp]
    GT: _ClassVar[CompareOp]
    GE: _ClassVar[CompareOp]

class ArithOp(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ADD: _ClassVar[ArithOp]
    SUB: _ClassVar[ArithOp]
    MUL: _ClassVar[ArithOp]
    DIV: _ClassVar[ArithOp]

class AggregateFunc(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COUNT_STAR: _ClassVar[AggregateFunc]
    COUNT: _ClassVar[AggregateFunc]
    SUM: _ClassVar[AggregateFunc]
    MIN: _ClassVar[AggregateFunc]
    MAX: _ClassVar[AggregateFunc]
OVERFLOW_DEFAULT: OverflowMode
OVERFLOW_ERROR: OverflowMode
OVERFLOW_NULL: OverflowMode
DIALECT_SQL: Dialect
DIALECT_PANDAS: Dialect
ENGINE_AUTO: Engine
ENGINE_ARROW: Engine
ENGINE_BPF: Engine
ENGINE_BCC: Engine
ENGINE_BPF_HOT: Engine
ENGINE_BPF_COLD: Engine
EQ: CompareOp
NE: CompareOp
LT: CompareOp
LE: CompareOp
GT: CompareOp
GE: CompareOp
ADD: ArithOp
SUB: ArithOp
MUL: ArithOp
DIV: ArithOp
COUNT_STAR: AggregateFunc
COUNT: AggregateFunc
SUM: AggregateFunc
MIN: AggregateFunc
MAX: AggregateFunc

class DataType(_message.Message):
    __slots__ = ("arrow",)
    ARROW_FIELD_NUMBER: _ClassVar[int]
    arrow: str
    def __init__(self, arrow: _Optional[str] = ...) -> None: ...

class Column(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class Literal(_message.Message):
    __slots__ = ("type", "null", "bool_value", "int_value", "uint_value", "float_value", "string_value", "decimal_value", "date_value", "timestamp_value")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NULL_FIELD_NUMBER: _ClassVar[int]
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    INT_VALUE_FIELD_NUMBER: _ClassVar[int]
    UINT_VALUE_FIELD_NUMBER: _ClassVar[int]
    FLOAT_VALUE_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    DECIMAL_VALUE_FIELD_NUMBER: _ClassVar[int]
    DATE_VALUE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_VALUE_FIELD_NUMBER: _ClassVar[int]
    type: DataType
    null: bool
    bool_value: bool
    int_value: int
    uint_value: int
    float_value: float
    string_value: str
    decimal_value: str
    date_value: int
    timestamp_value: int
    def __init__(self, type: _Optional[_Union[DataType, _Mapping]] = ..., null: _Optional[bool] = ..., bool_value: _Optional[bool] = ..., int_value: _Optional[int] = ..., uint_value: _Optional[int] = ..., float_value: _Optional[float] = ..., string_value: _Optional[str] = ..., decimal_value: _Optional[str] = ..., date_value: _Optional[int] = ..., timestamp_value: _Optional[int] = ...) -> None: ...

class Compare(_message.Message):
    __slots__ = ("op", "left", "right")
    OP_FIELD_NUMBER: _ClassVar[int]
    LEFT_FIELD_NUMBER: _ClassVar[int]
    RIGHT_FIELD_NUMBER: _ClassVar[int]
    op: CompareOp
    left: Expr
    right: Expr
    def __init__(self, op: _Optional[_Union[CompareOp, str]] = ..., left: _Optional[_Union[Expr, _Mapping]] = ..., right: _Optional[_Union[Expr, _Mapping]] = ...) -> None: ...

class And(_message.Message):
    __slots__ = ("args",)
    ARGS_FIELD_NUMBER: _ClassVar[int]
    args: _containers.RepeatedCompositeFieldContainer[Expr]
    def __init__(self, args: _Optional[_Iterable[_Union[Expr, _Mapping]]] = ...) -> None: ...

class Or(_message.Message):
    __slots__ = ("args",)
    ARGS_FIELD_NUMBER: _ClassVar[int]
    args: _containers.RepeatedCompositeFieldContainer[Expr]
    def __init__(self, args: _Optional[_Iterable[_Union[Expr, _Mapping]]] = ...) -> None: ...

class Not(_message.Message):
    __slots__ = ("arg",)
    ARG_FIELD_NUMBER: _ClassVar[int]
    arg: Expr
    def __init__(self, arg: _Optional[_Union[Expr, _Mapping]] = ...) -> None: ...

class In(_message.Message):
    __slots__ = ("arg", "values")
    ARG_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    arg: Expr
    values: _containers.RepeatedCompositeFieldContainer[Literal]
    def __init__(self, arg: _Optional[_Union[Expr, _Mapping]] = ..., values: _Optional[_Iterable[_Union[Literal, _Mapping]]] = ...) -> None: ...

class KeySet(_message.Message):
    __slots__ = ("arg", "keys")
    ARG_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    arg: Expr
    keys: bytes
    def __init__(self, arg: _Optional[_Union[Expr, _Mapping]] = ..., keys: _Optional[bytes] = ...) -> None: ...

class IsNull(_message.Message):
    __slots__ = ("arg",)
    ARG_FIELD_NUMBER: _ClassVar[int]
    arg: Expr
    def __init__(self, arg: _Optional[_Union[Expr, _Mapping]] = ...) -> None: ...

class Between(_message.Message):
    __slots__ = ("arg", "low", "high")
    ARG_FIELD_NUMBER: _ClassVar[int]
    LOW_FIELD_NUMBER: _ClassVar[int]
    HIGH_FIELD_NUMBER: _ClassVar[int]
    arg: Expr
    low: Expr
    high: Expr
    def __init__(self, arg: _Optional[_Union[Expr, _Mapping]] = ..., low: _Optional[_Union[Expr, _Mapping]] = ..., high: _Optional[_Union[Expr, _Mapping]] = ...) -> None: ...

class Arith(_message.Message):
    __slots__ = ("op", "left", "right")
    OP_FIELD_NUMBER: _ClassVar[int]
    LEFT_FIELD_NUMBER: _ClassVar[int]
    RIGHT_FIELD_NUMBER: _ClassVar[int]
    op: ArithOp
    left: Expr
    right: Expr
    def __init__(self, op: _Optional[_Union[ArithOp, str]] = ..., left: _Optional[_Union[Expr, _Mapping]] = ..., right: _Optional[_Union[Expr, _Mapping]] = ...) -> None: ...

class Negate(_message.Message):
    __slots__ = ("arg",)
    ARG_FIELD_NUMBER: _ClassVar[int]
    arg: Expr
    def __init__(self, arg: _Optional[_Union[Expr, _Mapping]] = ...) -> None: ...

class Cast(_message.Message):
    __slots__ = ("arg", "to")
    ARG_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    arg: Expr
    to: DataType
    def __init__(self, arg: _Optional[_Union[Expr, _Mapping]] = ..., to: _Optional[_Union[DataType, _Mapping]] = ...) -> None: ...

class Expr(_message.Message):
    __slots__ = ("column", "literal", "compare", "is_null", "between", "arith", "negate", "cast", "key_set", "result_type", "overflow")
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    LITERAL_FIELD_NUMBER: _ClassVar[int]
    COMPARE_FIELD_NUMBER: _ClassVar[int]
    AND_FIELD_NUMBER: _ClassVar[int]
    OR_FIELD_NUMBER: _ClassVar[int]
    NOT_FIELD_NUMBER: _ClassVar[int]
    IN_FIELD_NUMBER: _ClassVar[int]
    IS_NULL_FIELD_NUMBER: _ClassVar[int]
    BETWEEN_FIELD_NUMBER: _ClassVar[int]
    ARITH_FIELD_NUMBER: _ClassVar[int]
    NEGATE_FIELD_NUMBER: _ClassVar[int]
    CAST_FIELD_NUMBER: _ClassVar[int]
    KEY_SET_FIELD_NUMBER: _ClassVar[int]
    RESULT_TYPE_FIELD_NUMBER: _ClassVar[int]
    OVERFLOW_FIELD_NUMBER: _ClassVar[int]
    column: Column
    literal: Literal
    compare: Compare
    is_null: IsNull
    between: Between
    arith: Arith
    negate: Negate
    cast: Cast
    key_set: KeySet
    result_type: DataType
    overflow: OverflowMode
    def __init__(self, column: _Optional[_Union[Column, _Mapping]] = ..., literal: _Optional[_Union[Literal, _Mapping]] = ..., compare: _Optional[_Union[Compare, _Mapping]] = ..., is_null: _Optional[_Union[IsNull, _Mapping]] = ..., between: _Optional[_Union[Between, _Mapping]] = ..., arith: _Optional[_Union[Arith, _Mapping]] = ..., negate: _Optional[_Union[Negate, _Mapping]] = ..., cast: _Optional[_Union[Cast, _Mapping]] = ..., key_set: _Optional[_Union[KeySet, _Mapping]] = ..., result_type: _Optional[_Union[DataType, _Mapping]] = ..., overflow: _Optional[_Union[OverflowMode, str]] = ..., **kwargs) -> None: ...

class Aggregate(_message.Message):
    __slots__ = ("func", "arg")
    FUNC_FIELD_NUMBER: _ClassVar[int]
    ARG_FIELD_NUMBER: _ClassVar[int]
    func: AggregateFunc
    arg: Expr
    def __init__(self, func: _Optional[_Union[AggregateFunc, str]] = ..., arg: _Optional[_Union[Expr, _Mapping]] = ...) -> None: ...

class Plan(_message.Message):
    __slots__ = ("dataset", "partitions", "filter", "columns", "group_by", "aggregates", "dialect", "engine")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    AGGREGATES_FIELD_NUMBER: _ClassVar[int]
    DIALECT_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    partitions: _containers.RepeatedScalarFieldContainer[str]
    filter: Expr
    columns: _containers.RepeatedScalarFieldContainer[str]
    group_by: _containers.RepeatedScalarFieldContainer[str]
    aggregates: _containers.RepeatedCompositeFieldContainer[Aggregate]
    dialect: Dialect
    engine: Engine
    def __init__(self, dataset: _Optional[str] = ..., partitions: _Optional[_Iterable[str]] = ..., filter: _Optional[_Union[Expr, _Mapping]] = ..., columns: _Optional[_Iterable[str]] = ..., group_by: _Optional[_Iterable[str]] = ..., aggregates: _Optional[_Iterable[_Union[Aggregate, _Mapping]]] = ..., dialect: _Optional[_Union[Dialect, str]] = ..., engine: _Optional[_Union[Engine, str]] = ...) -> None: ...
