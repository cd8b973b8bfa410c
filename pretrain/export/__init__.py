"""`zhtw-export`: merge a trained adapter into the prepared model, write the card and optionally GGUF.

Why a package: the export has three separate jobs that share only the exported directory — the streaming
merge and reload check (`merge`), the model card (`model_card`) and the llama.cpp file (`gguf_writer`, named
so it never shadows the `gguf` library). The public API of the merge is re-exported here, so
`zhtw.pretrain.export.export` / `.main` and the `zhtw-export` entry point keep their names.
"""

from zhtw.pretrain.export import merge as _merge
from zhtw.pretrain.export.merge import *  # noqa: F403  (the public API, listed once in merge.__all__)

__all__ = list(_merge.__all__)
