"""The names the model server and the operator share: metric families, their label names, the
bin slots, the document formats and the paths the operator calls.

Defined once here and imported by both sides: the server writes these series and documents,
the ModelMonitor reads them back and the ModelDeployment controller asks these paths. This module
imports the standard library only (tested), so the operator can use it without pulling in any of
the server's runtime.
"""

from __future__ import annotations

from typing import Final

# Metric families as the server registers them; a counter's samples carry the `_total` suffix.
MONITORED_ROWS: Final = "flywheel_monitored_rows"
FEATURE_VALUES: Final = "flywheel_feature_values"
PREDICTIONS: Final = "flywheel_predictions"
PREDICTION_VALUES: Final = "flywheel_prediction_values"
PREDICTION_SCORE: Final = "flywheel_prediction_score"
FEEDBACK_LABELS: Final = "flywheel_feedback_labels"
FEEDBACK_CONFUSION: Final = "flywheel_feedback_confusion"
FEEDBACK_ABSOLUTE_ERROR: Final = "flywheel_feedback_absolute_error"
FEEDBACK_SQUARED_ERROR: Final = "flywheel_feedback_squared_error"
REQUESTS: Final = "flywheel_requests"
REQUEST_DURATION: Final = "flywheel_request_duration_seconds"
INFERENCE_DURATION: Final = "flywheel_inference_duration_seconds"
BATCH_SIZE: Final = "flywheel_batch_size"
IN_FLIGHT_REQUESTS: Final = "flywheel_in_flight_requests"
MODEL_INFO: Final = "flywheel_model_info"
MODEL_READY: Final = "flywheel_model_ready"
MONITORING_REJECTED_ROWS: Final = "flywheel_monitoring_rejected_rows"
"""Rows left out of the monitoring counts, by `reason` (see REJECT_REASONS)."""
REFUSED_ROWS: Final = "flywheel_refused_rows"
"""Rows refused (422) for their values before anything answered them, by `reason` (see
REFUSE_REASONS); each such row's missing values also count in its features' null slots of
FEATURE_VALUES. Apart from MONITORING_REJECTED_ROWS: those rows were answered."""

# Label names of those series.
MODEL: Final = "model"
VERSION: Final = "version"
FEATURE: Final = "feature"
BIN: Final = "bin"
CLASS: Final = "class"
PREDICTED: Final = "predicted"
ACTUAL: Final = "actual"
ENDPOINT: Final = "endpoint"
CODE: Final = "code"
SHA256: Final = "sha256"
REASON: Final = "reason"


def total(family: str) -> str:
    """The sample name of a counter family (`flywheel_predictions` -> `..._total`)."""
    return f"{family}_total"


SLOT_LABELS: Final[dict[str, tuple[str, ...]]] = {
    total(FEATURE_VALUES): (FEATURE, BIN),
    total(PREDICTIONS): (CLASS,),
    total(PREDICTION_VALUES): (BIN,),
    total(MONITORED_ROWS): (),
    total(FEEDBACK_LABELS): (),
    total(FEEDBACK_CONFUSION): (PREDICTED, ACTUAL),
    total(FEEDBACK_ABSOLUTE_ERROR): (),
}
"""Every counter the ModelMonitor reads, and the labels (besides model and version) that tell
its slots apart."""

REJECT_REASONS: Final = ("shape", "non_finite", "unknown_class", "error")
"""The `reason`s of MONITORING_REJECTED_ROWS: arrays whose shapes or types disagree with the
model's features or classes; a NaN or infinite probability or predicted value, or a NaN input;
a predicted class the model does not have; counting failed unexpectedly (logged)."""

# The `reason`s of REFUSED_ROWS: why the values of rows the server knew were refused (422).
REFUSED_MISSING: Final = "missing"
"""A value is missing where the model needs one: a numeric feature's null or NaN (JSON null,
NaN in raw bytes or gRPC contents, the text "nan"), or a v1 instance without a feature."""
REFUSED_OUT_OF_RANGE: Final = "out_of_range"
"""A numeric value float32 cannot hold: an infinity, or a number beyond float32 (1e39)."""
REFUSED_NOT_A_NUMBER: Final = "not_a_number"
"""Text that is not a number for a numeric feature (in v1 instances: anything but a number)."""
REFUSED_NOT_A_CATEGORY: Final = "not_a_category"
"""An infinite number sent as a categorical feature's code."""
REFUSED_BOOL: Final = "bool"
"""A BOOL tensor for a feature (numeric features take numbers, categorical ones text)."""
REFUSED_NON_FINITE_OUTPUT: Final = "non_finite_output"
"""The rows were valid, but the model's answer for them is not finite (never answered)."""
REFUSE_REASONS: Final = (
    REFUSED_MISSING,
    REFUSED_OUT_OF_RANGE,
    REFUSED_NOT_A_NUMBER,
    REFUSED_NOT_A_CATEGORY,
    REFUSED_BOOL,
    REFUSED_NON_FINITE_OUTPUT,
)
"""Every `reason` of REFUSED_ROWS, in the order they are exported (each series always exists).
A request refused for its structure (unknown or missing inputs, shapes, a malformed body) is not
counted there: its rows are unknown or meaningless."""

# Bin slots. A numeric feature's slots are the positions 0 (underflow) .. B+1 (overflow) of its
# baseline histogram, then `null`; a categorical feature's are its top values, then these three.
OTHER: Final = "__other__"
"""A value the baseline saw, outside its top categories."""
UNSEEN: Final = "__unseen__"
"""A value (or a predicted class) the baseline never saw."""
NULL: Final = "__null__"
"""A missing categorical value."""
NUMERIC_NULL: Final = "null"
"""A missing numeric value."""


def numeric_slots(edges: int) -> list[str]:
    """The slots of a numeric feature whose baseline histogram has `edges` edges."""
    return [str(position) for position in range(edges + 1)] + [NUMERIC_NULL]


def categorical_slots(top: list[str]) -> list[str]:
    """The slots of a categorical feature with these top categories."""
    return [*top, OTHER, UNSEEN, NULL]


# Documents.
STATS_FORMAT: Final = "flywheel.dev/stats/v1"
"""A Dataset snapshot's statistics: the drift baseline (docs/stats-format.md)."""
MODEL_CARD_FORMAT: Final = "flywheel.dev/model-card/v1"
MODEL_CARD_METADATA_KEY: Final = "flywheel.dev/model-card"
"""The ONNX `metadata_props` key under which training embeds the model card (the same JSON as
card.json), so the sha256 the ModelVersion records covers it; the server takes the card from
there."""
EXAMPLES_FORMAT: Final = "flywheel.dev/examples/v1"

# Pods.
ARTIFACTS_ROOT: Final = "/var/lib/flywheel/artifacts"
"""Where Job and serving pods mount artifact claims: `pvc://<claim>/<path>` is
`<ARTIFACTS_ROOT>/<claim>/<path>`."""

# HTTP.
PORT: Final = 8080
"""The port serving pods listen on (REST and metrics)."""
GRPC_PORT: Final = 8081
"""The gRPC API's port (KServe's and MLServer's default)."""
READY_PATH: Final = "/v2/health/ready"
LIVE_PATH: Final = "/v2/health/live"
METRICS_PATH: Final = "/metrics"


def baseline_path(model: str, version: str | int) -> str:
    """Where a server answers the baseline it bins one model version on."""
    return f"/v2/models/{model}/versions/{version}/baseline"
