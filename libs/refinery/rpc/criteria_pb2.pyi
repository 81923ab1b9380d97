from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CriterionVersion(_message.Message):
    __slots__ = ("version", "prompt", "judge_model", "templated_variables", "reward_model", "created_at")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    JUDGE_MODEL_FIELD_NUMBER: _ClassVar[int]
    TEMPLATED_VARIABLES_FIELD_NUMBER: _ClassVar[int]
    REWARD_MODEL_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    version: int
    prompt: str
    judge_model: str
    templated_variables: _containers.RepeatedScalarFieldContainer[str]
    reward_model: str
    created_at: float
    def __init__(self, version: _Optional[int] = ..., prompt: _Optional[str] = ..., judge_model: _Optional[str] = ..., templated_variables: _Optional[_Iterable[str]] = ..., reward_model: _Optional[str] = ..., created_at: _Optional[float] = ...) -> None: ...

class Criterion(_message.Message):
    __slots__ = ("id", "name", "versions", "created_at", "updated_at", "alignment_rows")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    ALIGNMENT_ROWS_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    versions: _containers.RepeatedCompositeFieldContainer[CriterionVersion]
    created_at: float
    updated_at: float
    alignment_rows: int
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., versions: _Optional[_Iterable[_Union[CriterionVersion, _Mapping]]] = ..., created_at: _Optional[float] = ..., updated_at: _Optional[float] = ..., alignment_rows: _Optional[int] = ...) -> None: ...

class CreateCriterionRequest(_message.Message):
    __slots__ = ("project_id", "name", "prompt", "judge_model", "templated_variables", "templated_variables_given", "reward_model")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    JUDGE_MODEL_FIELD_NUMBER: _ClassVar[int]
    TEMPLATED_VARIABLES_FIELD_NUMBER: _ClassVar[int]
    TEMPLATED_VARIABLES_GIVEN_FIELD_NUMBER: _ClassVar[int]
    REWARD_MODEL_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    name: str
    prompt: str
    judge_model: str
    templated_variables: _containers.RepeatedScalarFieldContainer[str]
    templated_variables_given: bool
    reward_model: str
    def __init__(self, project_id: _Optional[str] = ..., name: _Optional[str] = ..., prompt: _Optional[str] = ..., judge_model: _Optional[str] = ..., templated_variables: _Optional[_Iterable[str]] = ..., templated_variables_given: _Optional[bool] = ..., reward_model: _Optional[str] = ...) -> None: ...

class UpdateCriterionRequest(_message.Message):
    __slots__ = ("project_id", "name", "prompt", "judge_model", "templated_variables", "templated_variables_given", "reward_model")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    JUDGE_MODEL_FIELD_NUMBER: _ClassVar[int]
    TEMPLATED_VARIABLES_FIELD_NUMBER: _ClassVar[int]
    TEMPLATED_VARIABLES_GIVEN_FIELD_NUMBER: _ClassVar[int]
    REWARD_MODEL_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    name: str
    prompt: str
    judge_model: str
    templated_variables: _containers.RepeatedScalarFieldContainer[str]
    templated_variables_given: bool
    reward_model: str
    def __init__(self, project_id: _Optional[str] = ..., name: _Optional[str] = ..., prompt: _Optional[str] = ..., judge_model: _Optional[str] = ..., templated_variables: _Optional[_Iterable[str]] = ..., templated_variables_given: _Optional[bool] = ..., reward_model: _Optional[str] = ...) -> None: ...

class CriterionRef(_message.Message):
    __slots__ = ("project_id", "name")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    name: str
    def __init__(self, project_id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class ListCriteriaRequest(_message.Message):
    __slots__ = ("project_id",)
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    def __init__(self, project_id: _Optional[str] = ...) -> None: ...

class ListCriteriaResponse(_message.Message):
    __slots__ = ("criteria",)
    CRITERIA_FIELD_NUMBER: _ClassVar[int]
    criteria: _containers.RepeatedCompositeFieldContainer[Criterion]
    def __init__(self, criteria: _Optional[_Iterable[_Union[Criterion, _Mapping]]] = ...) -> None: ...

class DeleteCriterionResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: _Optional[bool] = ...) -> None: ...

class DatasetSample(_message.Message):
    __slots__ = ("dataset_id", "count", "output_model")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_MODEL_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    count: int
    output_model: str
    def __init__(self, dataset_id: _Optional[str] = ..., count: _Optional[int] = ..., output_model: _Optional[str] = ...) -> None: ...

class AddAlignmentRowsRequest(_message.Message):
    __slots__ = ("project_id", "name", "jsonl", "dataset")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    JSONL_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    name: str
    jsonl: bytes
    dataset: DatasetSample
    def __init__(self, project_id: _Optional[str] = ..., name: _Optional[str] = ..., jsonl: _Optional[bytes] = ..., dataset: _Optional[_Union[DatasetSample, _Mapping]] = ...) -> None: ...

class AlignmentLineError(_message.Message):
    __slots__ = ("line", "message")
    LINE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    line: int
    message: str
    def __init__(self, line: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class AddAlignmentRowsResponse(_message.Message):
    __slots__ = ("added", "errors")
    ADDED_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    added: int
    errors: _containers.RepeatedCompositeFieldContainer[AlignmentLineError]
    def __init__(self, added: _Optional[int] = ..., errors: _Optional[_Iterable[_Union[AlignmentLineError, _Mapping]]] = ...) -> None: ...

class Judgement(_message.Message):
    __slots__ = ("judgement", "score", "explanation", "error")
    JUDGEMENT_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    judgement: str
    score: float
    explanation: str
    error: str
    def __init__(self, judgement: _Optional[str] = ..., score: _Optional[float] = ..., explanation: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class AlignmentRow(_message.Message):
    __slots__ = ("id", "input_json", "output_json", "human_judgement", "judge", "created_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    HUMAN_JUDGEMENT_FIELD_NUMBER: _ClassVar[int]
    JUDGE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    input_json: bytes
    output_json: bytes
    human_judgement: str
    judge: Judgement
    created_at: float
    def __init__(self, id: _Optional[str] = ..., input_json: _Optional[bytes] = ..., output_json: _Optional[bytes] = ..., human_judgement: _Optional[str] = ..., judge: _Optional[_Union[Judgement, _Mapping]] = ..., created_at: _Optional[float] = ...) -> None: ...

class ListAlignmentRowsRequest(_message.Message):
    __slots__ = ("project_id", "name", "version", "limit", "offset")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    name: str
    version: int
    limit: int
    offset: int
    def __init__(self, project_id: _Optional[str] = ..., name: _Optional[str] = ..., version: _Optional[int] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class ListAlignmentRowsResponse(_message.Message):
    __slots__ = ("rows", "total", "version")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[AlignmentRow]
    total: int
    version: int
    def __init__(self, rows: _Optional[_Iterable[_Union[AlignmentRow, _Mapping]]] = ..., total: _Optional[int] = ..., version: _Optional[int] = ...) -> None: ...

class LabelRowRequest(_message.Message):
    __slots__ = ("project_id", "name", "row_id", "human_judgement")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROW_ID_FIELD_NUMBER: _ClassVar[int]
    HUMAN_JUDGEMENT_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    name: str
    row_id: str
    human_judgement: str
    def __init__(self, project_id: _Optional[str] = ..., name: _Optional[str] = ..., row_id: _Optional[str] = ..., human_judgement: _Optional[str] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ("project_id", "name", "version")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    name: str
    version: int
    def __init__(self, project_id: _Optional[str] = ..., name: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class StatsResponse(_message.Message):
    __slots__ = ("version", "precision", "recall", "f1", "true_positives", "false_positives", "false_negatives", "true_negatives", "pending", "labeled", "total")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    RECALL_FIELD_NUMBER: _ClassVar[int]
    F1_FIELD_NUMBER: _ClassVar[int]
    TRUE_POSITIVES_FIELD_NUMBER: _ClassVar[int]
    FALSE_POSITIVES_FIELD_NUMBER: _ClassVar[int]
    FALSE_NEGATIVES_FIELD_NUMBER: _ClassVar[int]
    TRUE_NEGATIVES_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    LABELED_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    version: int
    precision: float
    recall: float
    f1: float
    true_positives: int
    false_positives: int
    false_negatives: int
    true_negatives: int
    pending: int
    labeled: int
    total: int
    def __init__(self, version: _Optional[int] = ..., precision: _Optional[float] = ..., recall: _Optional[float] = ..., f1: _Optional[float] = ..., true_positives: _Optional[int] = ..., false_positives: _Optional[int] = ..., false_negatives: _Optional[int] = ..., true_negatives: _Optional[int] = ..., pending: _Optional[int] = ..., labeled: _Optional[int] = ..., total: _Optional[int] = ...) -> None: ...

class JudgeUsage(_message.Message):
    __slots__ = ("prompt_tokens", "completion_tokens", "total_tokens", "cost_usd")
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: float
    def __init__(self, prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., total_tokens: _Optional[int] = ..., cost_usd: _Optional[float] = ...) -> None: ...

class JudgeRequest(_message.Message):
    __slots__ = ("project_id", "criterion_id", "input_json", "output_json")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    CRITERION_ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    criterion_id: str
    input_json: bytes
    output_json: bytes
    def __init__(self, project_id: _Optional[str] = ..., criterion_id: _Optional[str] = ..., input_json: _Optional[bytes] = ..., output_json: _Optional[bytes] = ...) -> None: ...

class JudgeResponse(_message.Message):
    __slots__ = ("score", "explanation", "usage", "judgement")
    SCORE_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    JUDGEMENT_FIELD_NUMBER: _ClassVar[int]
    score: float
    explanation: str
    usage: JudgeUsage
    judgement: str
    def __init__(self, score: _Optional[float] = ..., explanation: _Optional[str] = ..., usage: _Optional[_Union[JudgeUsage, _Mapping]] = ..., judgement: _Optional[str] = ...) -> None: ...

class ResolveCriteriaRequest(_message.Message):
    __slots__ = ("project_id", "criteria")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    CRITERIA_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    criteria: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, project_id: _Optional[str] = ..., criteria: _Optional[_Iterable[str]] = ...) -> None: ...

class ResolveCriteriaResponse(_message.Message):
    __slots__ = ("names",)
    NAMES_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, names: _Optional[_Iterable[str]] = ...) -> None: ...

class JudgeChoicesRequest(_message.Message):
    __slots__ = ("project_id", "criteria", "input_json", "outputs_json")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    CRITERIA_FIELD_NUMBER: _ClassVar[int]
    INPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_JSON_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    criteria: _containers.RepeatedScalarFieldContainer[str]
    input_json: bytes
    outputs_json: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, project_id: _Optional[str] = ..., criteria: _Optional[_Iterable[str]] = ..., input_json: _Optional[bytes] = ..., outputs_json: _Optional[_Iterable[bytes]] = ...) -> None: ...

class CriterionResult(_message.Message):
    __slots__ = ("criterion", "status", "score", "explanation", "error_code", "error_message")
    CRITERION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    criterion: str
    status: str
    score: float
    explanation: str
    error_code: str
    error_message: str
    def __init__(self, criterion: _Optional[str] = ..., status: _Optional[str] = ..., score: _Optional[float] = ..., explanation: _Optional[str] = ..., error_code: _Optional[str] = ..., error_message: _Optional[str] = ...) -> None: ...

class ChoiceResults(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[CriterionResult]
    def __init__(self, results: _Optional[_Iterable[_Union[CriterionResult, _Mapping]]] = ...) -> None: ...

class JudgeChoicesResponse(_message.Message):
    __slots__ = ("choices", "usage")
    CHOICES_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    choices: _containers.RepeatedCompositeFieldContainer[ChoiceResults]
    usage: JudgeUsage
    def __init__(self, choices: _Optional[_Iterable[_Union[ChoiceResults, _Mapping]]] = ..., usage: _Optional[_Union[JudgeUsage, _Mapping]] = ...) -> None: ...
