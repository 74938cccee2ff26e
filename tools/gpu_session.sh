#!/usr/bin/env bash
# One lent-GPU call as run by the session of reports/gpu_checks and GPU run 3 of
# reports/training/mbt2018_mean_vr_gpu: install the carried wheels (.whl/), build the coder, run
# tools/gpu_checks.py device on the files `gpu_checks.py prepare` wrote to gpu_carry/cpu, then
# tools/gpu_recipe.sh (EVALUATE=0) on gpu_carry/data; everything is logged to $OUT and the model
# comes back split in 15 MB parts (files come back in pieces of at most 16 MiB).
#   OUT=$OUT TRAIN_ARGS="trainer.max_time=00:00:05:00 optim.optimizer.lr=1e-4 trainer.enable_progress_bar=false" bash tools/gpu_session.sh
set -uo pipefail
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT"
T0=$(date +%s); stamp() { echo "$(( $(date +%s) - T0 )) s: $*" | tee -a "$OUT/timeline.txt"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > "$OUT/install.log" 2>&1
export PYTHONPATH="/tmp/site:$PWD" WANDB_MODE=disabled PYTHONUNBUFFERED=1
python3 setup.py -q build_ext --inplace > "$OUT/build.log" 2>&1; stamp "installed and built (rc $?)"
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; python3 -c "import torch; print(torch.__version__, torch.version.cuda)") > "$OUT/device.txt" 2>&1
timeout "${CHECK_S:-150}" python3 tools/gpu_checks.py device models/zoo/mbt2018_mean_vr.safetensors gpu_carry/cpu \
    gpu_carry/data/kodak/kodim0{1,2,3,4}.png --out "$OUT/checks" > "$OUT/checks.log" 2>&1; stamp "checks (rc $?)"
OUT=/tmp/train EVALUATE=0 DATA=gpu_carry/data TRAIN_ARGS="${TRAIN_ARGS:-}" tools/gpu_recipe.sh > "$OUT/train.log" 2>&1
stamp "training (rc $?)"
cp "$(ls -td /tmp/train/run/csv/*/ | head -1)metrics.csv" "$OUT/metrics.csv" 2>/dev/null; cp /tmp/train/run/train.log "$OUT/hydra_train.log" 2>/dev/null
cp /tmp/train/run/.hydra/config.yaml "$OUT/train_config.yaml" 2>/dev/null
M=/tmp/train/run/model.safetensors
[ -f "$M" ] && sha256sum "$M" > "$OUT/model.sha256" && split -b 15M -d "$M" "$OUT/model.safetensors.part"
stamp done
