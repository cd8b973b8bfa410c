"""`zhtw-export`: merge a trained adapter into the prepared model, write the card and optionally GGUF.

Why a package: the export has three separate jobs that share only the exported directory — the streaming
merge and reload check (`merge`), the model card (`model_card`) and the llama.cpp file (`gguf_writer`, named
so it never shadows the `gguf` library). The public API of the merge is re-exported here, so
`zhtw.pretrain.export.export` / `.main` and the `zhtw-export` entry point keep their names.
"""

from zhtw.pretrain.export.merge import (
    DTYPES,
    EXPORT_FORMAT,
    EXPORT_METADATA,
    GGUF_TYPES,
    SAMPLE_TEXTS,
    AdapterInfo,
    AdapterMismatchError,
    ExportError,
    ExportMeta,
    VerificationError,
    check_adapter_fits,
    export,
    find_training_summary,
    inspect_adapter,
    main,
    merge_to_shards,
    verify_export,
)

__all__ = [
    "DTYPES",
    "EXPORT_FORMAT",
    "EXPORT_METADATA",
    "ExportMeta",
    "GGUF_TYPES",
    "SAMPLE_TEXTS",
    "AdapterInfo",
    "AdapterMismatchError",
    "ExportError",
    "VerificationError",
    "check_adapter_fits",
    "export",
    "find_training_summary",
    "inspect_adapter",
    "main",
    "merge_to_shards",
    "verify_export",
]
