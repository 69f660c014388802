#!/usr/bin/env bash
# One prepared GPU session (a lent machine, ~10 minutes): the real-size benchmarks, then the embedded AudioLDM
# recipe with a larger UNet, trained for both conditioners side by side on the one GPU until a deadline.
#
#   OUT=/tmp/gpu bash benchmarks/device_session.sh                 # on the GPU machine
#   DRY=1 OUT=/tmp/gpu bash benchmarks/device_session.sh           # CPU plumbing check: tiny sizes, short deadline
#
# Everything it measures lands in $OUT (Markdown tables, logs) and each trained model's UNet (fp16 weights,
# configs, logs) in $OUT/<name>.tar, so the files can be copied back and assembled with the shipped VAE,
# vocoder and CLAPs. Each part is capped by `timeout` and a failing part does not stop the next one.
set -u
OUT=${OUT:-/tmp/device_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
rm -rf /tmp/ldm_t /tmp/ldm_b /tmp/pack
T0=$(date +%s)
since() { echo $(( $(date +%s) - T0 )); }
log() { echo "[$(since) s] $*" | tee -a "$OUT/session.log"; }

if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then  # packages the GPU image lacks (see the device README)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD || log "wheel install failed"
else
  export PYTHONPATH=$PWD
fi
PY=${PY:-python3}
if [ "${DRY:-0}" = 1 ]; then
  DEV=cpu; N_TRAIN=${N_TRAIN:-32}; DEADLINE=${DEADLINE:-150}; STEPS_CAP=${STEPS_CAP:-40}; CKPT=${CKPT:-10}
  BATCH=${BATCH:-8}; UNET=${UNET:-16,32,64}
else
  DEV=cuda; N_TRAIN=${N_TRAIN:-4096}; DEADLINE=${DEADLINE:-420}; STEPS_CAP=${STEPS_CAP:-40000}; CKPT=${CKPT:-500}
  BATCH=${BATCH:-64}; UNET=${UNET:-32,64,128}
fi
log "device=$DEV n_train=$N_TRAIN unet=$UNET batch=$BATCH deadline=${DEADLINE}s"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
  $PY -c "import torch, transformers, diffusers, accelerate; print('torch', torch.__version__, 'transformers', transformers.__version__, 'diffusers', diffusers.__version__, 'accelerate', accelerate.__version__, 'cuda', torch.cuda.is_available())"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

# --- 1. data for the LDM runs (CPU, in the background while the GPU benchmarks run)
RECIPE_ARGS="--n-train $N_TRAIN --no-install --no-val-generate"
$PY - "$N_TRAIN" > "$OUT/data.log" 2>&1 <<'EOF' &
import sys, shutil
from pathlib import Path
from conductor.recipes.audioldm import RecipeConfig, build_data
build_data(Path("/tmp/ldm_t"), RecipeConfig(n_train=int(sys.argv[1])), quiet=True)
shutil.copytree("/tmp/ldm_t/data", "/tmp/ldm_b/data", dirs_exist_ok=True)
print("data ready")
EOF
DATA_PID=$!

# --- 2. real-size benchmarks (the GPU to themselves)
if [ "$DEV" = cuda ] && [ "${SKIP_BENCH:-0}" != 1 ]; then
  log "bench_pipeline real-size fp16"
  timeout 200 $PY benchmarks/bench_pipeline.py --device cuda --real-size --dtype fp16 > "$OUT/bench_pipeline_real_fp16.md" 2>"$OUT/bench_pipeline.err" || log "bench_pipeline failed: $(tail -n 2 "$OUT/bench_pipeline.err")"
  log "bench_train real-size"
  timeout 170 $PY benchmarks/bench_train.py --model htsat-tiny-roberta --device cuda --batch-size 64 --steps 8 > "$OUT/bench_train_real.md" 2>"$OUT/bench_train.err" || log "bench_train failed: $(tail -n 2 "$OUT/bench_train.err")"
  log "bench_stream paper preset from shards (issue 23: >= 1500 samples/s bf16, data loading included)"
  timeout 240 $PY benchmarks/bench_stream.py --paper --steps 60 --batch-size 64 --workers 8 --mixed-precision bf16 > "$OUT/bench_stream_paper.md" 2>"$OUT/bench_stream.err" || log "bench_stream failed: $(tail -n 2 "$OUT/bench_stream.err")"
fi
wait $DATA_PID || log "data build failed: $(tail -n 3 "$OUT/data.log")"

# --- 3. two LDMs side by side until the deadline, then finalised from their last checkpoints
COMMON="--vae tiny-tclap --unet-channels $UNET --ldm-batch $BATCH --ldm-lr 5e-4 --ldm-warmup 200 --ema-decay 0.999 --ckpt-every $CKPT --val-every 1000000 --val-prompts 8 $RECIPE_ARGS"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}
log "LDM training: $COMMON"
$PY -m conductor.recipes.audioldm --out /tmp/ldm_t --conditioners tiny-tclap --ldm-steps $STEPS_CAP $COMMON > "$OUT/ldm_tclap.log" 2>&1 &
P1=$!
$PY -m conductor.recipes.audioldm --out /tmp/ldm_b --conditioners tiny-baseline --ldm-steps $STEPS_CAP $COMMON > "$OUT/ldm_baseline.log" 2>&1 &
P2=$!
while [ "$(since)" -lt "$DEADLINE" ] && { kill -0 $P1 2>/dev/null || kill -0 $P2 2>/dev/null; }; do
  sleep 15
  log "tclap: $(tail -c 300 "$OUT/ldm_tclap.log" | tr '\r' '\n' | grep -v '^$' | tail -n 1)"
  log "baseline: $(tail -c 300 "$OUT/ldm_baseline.log" | tr '\r' '\n' | grep -v '^$' | tail -n 1)"
  log "gpu: $(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null)"
done
kill $P1 $P2 2>/dev/null; wait $P1 $P2 2>/dev/null
log "training stopped"
finalise() {  # $1: short name, $2: model name -> $OUT/$2.tar
  local short=$1 name=$2 d=/tmp/ldm_${1:0:1} last step
  last=$(ls -d $d/ldm-$name/checkpoints/step-* 2>/dev/null | sort | tail -n 1)
  if [ -z "$last" ]; then log "$name: no checkpoint"; return; fi
  step=$((10#${last##*step-}))
  log "$name: finalising at step $step"
  timeout ${FIN_TIMEOUT:-150} $PY -m conductor.recipes.audioldm --out $d --conditioners $name --ldm-steps $step $COMMON >> "$OUT/ldm_$short.log" 2>&1 || log "$name: finalise failed"
  [ -d $d/ldm-$name/final/unet ] || return
  $PY - $d/ldm-$name /tmp/pack/$name <<'EOF2'
import shutil, sys
from pathlib import Path
from safetensors.torch import load_file, save_file
run, dst = Path(sys.argv[1]), Path(sys.argv[2])
(dst / "unet").mkdir(parents=True, exist_ok=True)
for f in (run / "final" / "unet").glob("*.safetensors"):  # fp16 only to fit the copy-back limit (16 MiB a file)
    save_file({k: v.half().contiguous() for k, v in load_file(str(f)).items()}, str(dst / "unet" / f.name))
shutil.copy(run / "final" / "unet" / "config.json", dst / "unet" / "config.json")
for name in ("audioldm_cond.json", "training.json", "model_index.json"):
    shutil.copy(run / "final" / name, dst / name)
(dst / "vae").mkdir(exist_ok=True)
shutil.copy(run / "final" / "vae" / "config.json", dst / "vae" / "config.json")
for f in ("log.jsonl", "config.json"):
    if (run / f).exists():
        shutil.copy(run / f, dst / f)
EOF2
  tar -C /tmp/pack -cf "$OUT/$name.tar" $name && log "$name: packed $(du -h "$OUT/$name.tar" | cut -f1)"
}
finalise tclap tiny-tclap &
finalise baseline tiny-baseline &
wait
log "done"
