from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateEvalRequest(_message.Message):
    __slots__ = ("project_id", "name", "dataset_id", "models", "type", "judge_model", "instructions", "criterion", "grader", "auto_add_models")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    JUDGE_MODEL_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    CRITERION_FIELD_NUMBER: _ClassVar[int]
    GRADER_FIELD_NUMBER: _ClassVar[int]
    AUTO_ADD_MODELS_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    name: str
    dataset_id: str
    models: _containers.RepeatedScalarFieldContainer[str]
    type: str
    judge_model: str
    instructions: str
    criterion: str
    grader: str
    auto_add_models: bool
    def __init__(self, project_id: _Optional[str] = ..., name: _Optional[str] = ..., dataset_id: _Optional[str] = ..., models: _Optional[_Iterable[str]] = ..., type: _Optional[str] = ..., judge_model: _Optional[str] = ..., instructions: _Optional[str] = ..., criterion: _Optional[str] = ..., grader: _Optional[str] = ..., auto_add_models: _Optional[bool] = ...) -> None: ...

class EvalRef(_message.Message):
    __slots__ = ("project_id", "eval_id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    EVAL_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    eval_id: str
    def __init__(self, project_id: _Optional[str] = ..., eval_id: _Optional[str] = ...) -> None: ...

class ListEvalsRequest(_message.Message):
    __slots__ = ("project_id", "dataset_id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    dataset_id: str
    def __init__(self, project_id: _Optional[str] = ..., dataset_id: _Optional[str] = ...) -> None: ...

class ModelResult(_message.Message):
    __slots__ = ("model", "score", "errors", "cost_usd", "latency_ms_p50", "comparisons", "scored")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_P50_FIELD_NUMBER: _ClassVar[int]
    COMPARISONS_FIELD_NUMBER: _ClassVar[int]
    SCORED_FIELD_NUMBER: _ClassVar[int]
    model: str
    score: float
    errors: int
    cost_usd: float
    latency_ms_p50: float
    comparisons: int
    scored: int
    def __init__(self, model: _Optional[str] = ..., score: _Optional[float] = ..., errors: _Optional[int] = ..., cost_usd: _Optional[float] = ..., latency_ms_p50: _Optional[float] = ..., comparisons: _Optional[int] = ..., scored: _Optional[int] = ...) -> None: ...

class MatrixCell(_message.Message):
    __slots__ = ("model", "opponent", "win_rate", "comparisons")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    OPPONENT_FIELD_NUMBER: _ClassVar[int]
    WIN_RATE_FIELD_NUMBER: _ClassVar[int]
    COMPARISONS_FIELD_NUMBER: _ClassVar[int]
    model: str
    opponent: str
    win_rate: float
    comparisons: int
    def __init__(self, model: _Optional[str] = ..., opponent: _Optional[str] = ..., win_rate: _Optional[float] = ..., comparisons: _Optional[int] = ...) -> None: ...

class Eval(_message.Message):
    __slots__ = ("id", "name", "dataset_id", "type", "models", "status", "done", "total", "results", "matrix", "comparisons", "judge_model", "instructions", "criterion", "grader", "auto_add_models", "rows", "error", "created_at", "updated_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    MATRIX_FIELD_NUMBER: _ClassVar[int]
    COMPARISONS_FIELD_NUMBER: _ClassVar[int]
    JUDGE_MODEL_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    CRITERION_FIELD_NUMBER: _ClassVar[int]
    GRADER_FIELD_NUMBER: _ClassVar[int]
    AUTO_ADD_MODELS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    dataset_id: str
    type: str
    models: _containers.RepeatedScalarFieldContainer[str]
    status: str
    done: int
    total: int
    results: _containers.RepeatedCompositeFieldContainer[ModelResult]
    matrix: _containers.RepeatedCompositeFieldContainer[MatrixCell]
    comparisons: int
    judge_model: str
    instructions: str
    criterion: str
    grader: str
    auto_add_models: bool
    rows: int
    error: str
    created_at: float
    updated_at: float
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., dataset_id: _Optional[str] = ..., type: _Optional[str] = ..., models: _Optional[_Iterable[str]] = ..., status: _Optional[str] = ..., done: _Optional[int] = ..., total: _Optional[int] = ..., results: _Optional[_Iterable[_Union[ModelResult, _Mapping]]] = ..., matrix: _Optional[_Iterable[_Union[MatrixCell, _Mapping]]] = ..., comparisons: _Optional[int] = ..., judge_model: _Optional[str] = ..., instructions: _Optional[str] = ..., criterion: _Optional[str] = ..., grader: _Optional[str] = ..., auto_add_models: _Optional[bool] = ..., rows: _Optional[int] = ..., error: _Optional[str] = ..., created_at: _Optional[float] = ..., updated_at: _Optional[float] = ...) -> None: ...

class ListEvalsResponse(_message.Message):
    __slots__ = ("evals",)
    EVALS_FIELD_NUMBER: _ClassVar[int]
    evals: _containers.RepeatedCompositeFieldContainer[Eval]
    def __init__(self, evals: _Optional[_Iterable[_Union[Eval, _Mapping]]] = ...) -> None: ...

class ModelOutput(_message.Message):
    __slots__ = ("model", "output_json", "error", "latency_ms", "cost_usd", "done")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    model: str
    output_json: bytes
    error: str
    latency_ms: float
    cost_usd: float
    done: bool
    def __init__(self, model: _Optional[str] = ..., output_json: _Optional[bytes] = ..., error: _Optional[str] = ..., latency_ms: _Optional[float] = ..., cost_usd: _Optional[float] = ..., done: _Optional[bool] = ...) -> None: ...

class RowJudgement(_message.Message):
    __slots__ = ("model", "opponent", "score", "reasoning", "error", "winner", "done")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    OPPONENT_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    REASONING_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    WINNER_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    model: str
    opponent: str
    score: float
    reasoning: str
    error: str
    winner: str
    done: bool
    def __init__(self, model: _Optional[str] = ..., opponent: _Optional[str] = ..., score: _Optional[float] = ..., reasoning: _Optional[str] = ..., error: _Optional[str] = ..., winner: _Optional[str] = ..., done: _Optional[bool] = ...) -> None: ...

class EvalRow(_message.Message):
    __slots__ = ("id", "input_json", "dataset_output_json", "outputs", "judgements")
    ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    DATASET_OUTPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    JUDGEMENTS_FIELD_NUMBER: _ClassVar[int]
    id: str
    input_json: bytes
    dataset_output_json: bytes
    outputs: _containers.RepeatedCompositeFieldContainer[ModelOutput]
    judgements: _containers.RepeatedCompositeFieldContainer[RowJudgement]
    def __init__(self, id: _Optional[str] = ..., input_json: _Optional[bytes] = ..., dataset_output_json: _Optional[bytes] = ..., outputs: _Optional[_Iterable[_Union[ModelOutput, _Mapping]]] = ..., judgements: _Optional[_Iterable[_Union[RowJudgement, _Mapping]]] = ...) -> None: ...

class ListEvalRowsRequest(_message.Message):
    __slots__ = ("project_id", "eval_id", "limit", "offset")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    EVAL_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    eval_id: str
    limit: int
    offset: int
    def __init__(self, project_id: _Optional[str] = ..., eval_id: _Optional[str] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class ListEvalRowsResponse(_message.Message):
    __slots__ = ("rows", "total")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[EvalRow]
    total: int
    def __init__(self, rows: _Optional[_Iterable[_Union[EvalRow, _Mapping]]] = ..., total: _Optional[int] = ...) -> None: ...

class DeleteEvalResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: _Optional[bool] = ...) -> None: ...

class AddModelsRequest(_message.Message):
    __slots__ = ("project_id", "eval_id", "models")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    EVAL_ID_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    eval_id: str
    models: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, project_id: _Optional[str] = ..., eval_id: _Optional[str] = ..., models: _Optional[_Iterable[str]] = ...) -> None: ...
