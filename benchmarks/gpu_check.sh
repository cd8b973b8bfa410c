#!/usr/bin/env bash
# Issue 13's GPU check, as one command on a machine with a CUDA GPU (about 6-8 minutes on an H100/H200):
#   benchmarks/gpu_check.sh [OUT_DIR]          (default build/benchmarks)
# 1. installs bitsandbytes when it is missing (from $BNB_WHEELS, e.g. carried wheels, else from PyPI);
# 2. makes `import zhtw` work from this checkout when the project is not installed (a PYTHONPATH shim);
# 3. benchmarks/gpu_check.py: random-weight Llama-2-7B shape, 61,440 rows, NF4, LoRA r=32, new rows trainable,
#    sdpa vs S²-Attn at 2k/4k/8k: peak memory, tokens/s and the estimator's figure -> gpu_check.json + .md;
# 4. benchmarks/s2attn.py --device cuda: the attention-only benchmark -> s2attn_cuda.json.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-build/benchmarks}
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && PY=.venv/bin/python
mkdir -p "$OUT_DIR"

if ! "$PY" -c "import bitsandbytes" 2>/dev/null; then
  if [ -n "${BNB_WHEELS:-}" ] && [ -d "$BNB_WHEELS" ]; then
    "$PY" -m pip install --quiet --no-index --find-links "$BNB_WHEELS" bitsandbytes
  else
    "$PY" -m pip install --quiet "bitsandbytes>=0.45"
  fi
fi

if ! "$PY" -c "import zhtw.pretrain.train" 2>/dev/null; then
  SHIM=$(mktemp -d)/zhtw-shim
  mkdir -p "$SHIM/zhtw"
  touch "$SHIM/zhtw/__init__.py"
  for pkg in common corpus tokenizer pretrain; do ln -s "$PWD/$pkg" "$SHIM/zhtw/$pkg"; done
  export PYTHONPATH="$SHIM${PYTHONPATH:+:$PYTHONPATH}"
fi

export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
timeout 480 "$PY" benchmarks/gpu_check.py --out "$OUT_DIR/gpu_check.json"
timeout 120 "$PY" benchmarks/s2attn.py --device cuda --lengths 2048 4096 8192 --out "$OUT_DIR/s2attn_cuda.json" \
  || echo "gpu_check.sh: the attention benchmark did not finish (see above)"
echo "gpu_check.sh: results in $OUT_DIR/gpu_check.json, $OUT_DIR/gpu_check.md, $OUT_DIR/s2attn_cuda.json"
