"""Shared fixtures: the real data beside the project, skipped cleanly when absent."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ZHTW_SHARED_DATA", REPO.parent / "shared" / "data"))
LLAMACPP_BIN = Path(os.environ.get("ZHTW_LLAMACPP_DIR", Path.home() / ".cache/zhtw/llama.cpp")) / "bin"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    have_shared = SHARED_DATA.is_dir()
    try:
        import torch

        have_cuda = torch.cuda.is_available()
    except ImportError:
        have_cuda = False
    for item in items:
        if "shared_data" in item.keywords and not have_shared:
            item.add_marker(pytest.mark.skip(reason=f"shared data not found at {SHARED_DATA}"))
        if "gpu" in item.keywords and not have_cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data; tests using it must also carry the `shared_data` marker."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def llama_tokenize() -> Callable[[Path, str], list[int]]:
    """llama.cpp's own tokenizer (`llama-tokenize`, BOS as the GGUF metadata asks); skips when not built."""
    exe = LLAMACPP_BIN / "llama-tokenize"
    if not exe.is_file():
        pytest.skip(f"llama.cpp is not built; run `bash scripts/build_llamacpp.sh` (caches it in {LLAMACPP_BIN})")

    def run(gguf: Path, text: str) -> list[int]:
        proc = subprocess.run([str(exe), "-m", str(gguf), "-p", text, "--ids", "--log-disable"],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])

    return run
