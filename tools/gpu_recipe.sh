#!/usr/bin/env bash
# The short GPU recipe (issue 12), one script for one H100-class GPU, offline:
#   1. installs the packages the GPU image lacks from wheels in .whl/ (if any; see the README),
#   2. builds the C++ coder,
#   3. trains the variable-rate mbt2018-mean for about 6 minutes (experiment=mbt2018_mean_vr_gpu)
#      from the best committed weights (INIT, default models/zoo/mbt2018_mean_vr.safetensors),
#   4. evaluates it on Kodak (8 levels, real bytes) and writes to OUT (default ./gpu_run):
#      model.safetensors (bf16 weights), metrics.csv (the training curve), kodak_report.md, kodak_curve.json.
#      EVALUATE=0 stops after training, to evaluate elsewhere and keep the GPU minutes for training.
# DATA is the data folder (kodak/ and train/bsds500/ inside; default ../shared/data).
# EXPERIMENT picks another recipe (e.g. EXPERIMENT=walloc_paper INIT=none TRAIN_ARGS="trainer=gpu
# trainer.max_time=00:00:08:00"), NAME its curve's name in the Kodak report.
# TRAIN_ARGS / EVAL_ARGS add Hydra overrides (e.g. a CPU check: TRAIN_ARGS="trainer.accelerator=cpu
# trainer.max_steps=3 data.batch_size=2 data.num_workers=0" EVAL_ARGS="max_images=1 rate_points=2").
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu_run}"
DATA="${DATA:-../shared/data}"
INIT="${INIT:-models/zoo/mbt2018_mean_vr.safetensors}"
EXPERIMENT="${EXPERIMENT:-mbt2018_mean_vr_gpu}"
NAME="${NAME:-mbt2018_mean_vr}"
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
python3 setup.py -q build_ext --inplace
export WANDB_MODE=disabled PYTHONUNBUFFERED=1 PROJECT_ROOT="$PWD"
init=()
[ -f "$INIT" ] && init=("init_weights=$INIT")
# shellcheck disable=SC2086
python3 train.py "experiment=$EXPERIMENT" "${init[@]}" "paths.data_dir=$DATA" "hydra.run.dir=$OUT/run" ${TRAIN_ARGS:-}
cp "$OUT/run/model.safetensors" "$OUT/model.safetensors"
# The newest CSV log: a second run into the same OUT adds csv/version_1, ...
cp "$(ls -td "$OUT"/run/csv/*/ | head -1)metrics.csv" "$OUT/metrics.csv"
[ "${EVALUATE:-1}" = 0 ] && { echo "wrote $OUT/model.safetensors, $OUT/metrics.csv"; exit 0; }
# shellcheck disable=SC2086
python3 eval.py data=kodak classic=none "paths.data_dir=$DATA" "model=$OUT/model.safetensors" "name=$NAME" \
    progress=false cache_dir=null "hydra.run.dir=$OUT/eval" ${EVAL_ARGS:-}
cp "$OUT/eval/report.md" "$OUT/kodak_report.md"
cp "$OUT"/eval/curves/*.json "$OUT/kodak_curve.json"
echo "wrote $OUT/model.safetensors, $OUT/metrics.csv, $OUT/kodak_report.md, $OUT/kodak_curve.json"
