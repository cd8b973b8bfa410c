"""`training_summary.json`, the hand-off record of `zhtw-pretrain train`, as a typed class the export reads through.

Why typed: the export checks the adapter against the prepared model it was trained on, and the model card
prints the run's numbers; both depend on a handful of keys of this file. Those keys are typed fields here
(checked when read: a damaged file is refused by name instead of failing deep inside the merge); every other
key the training writes (hyperparameters, versions, timings, ...) is kept as it is in `extra`. No torch or
transformers import, so reading a summary stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from zhtw.common.meta import ArtifactMeta, typed

__all__ = ["SUMMARY_FILE", "SUMMARY_FORMAT", "TrainSummary"]

SUMMARY_FILE = "training_summary.json"
SUMMARY_FORMAT = "zhtw-train/1"
_NONE = type(None)


@dataclass
class TrainSummary(ArtifactMeta):
    """The keys export and the model card read; all optional, since a summary is rewritten at every save."""

    FILENAME: ClassVar[str] = SUMMARY_FILE
    FORMAT: ClassVar[str | None] = SUMMARY_FORMAT
    MADE_BY: ClassVar[str] = "zhtw-pretrain train"

    status: str = typed(str, default="finished")  # "training" while the run has not ended
    prepared_model: str | None = typed((str, _NONE), default=None)
    prepare_metadata: dict[str, Any] = typed(dict, default_factory=dict)  # zhtw_prepare.json as trained on
    prepared_model_identity: str | None = typed((str, _NONE), default=None)  # absent in early summaries
    adapter_path: str | None = typed((str, _NONE), default=None)  # None until the run finished
    options: dict[str, Any] = typed(dict, default_factory=dict)
    final: dict[str, Any] = typed(dict, default_factory=dict)
    log_history: list[dict[str, Any]] = typed(list, default_factory=list)
    files: dict[str, Any] = typed(dict, default_factory=dict)
    bits_per_char: dict[str, Any] | None = typed((dict, _NONE), default=None)
