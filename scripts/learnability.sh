#!/usr/bin/env bash
# The learnability table (docs/results.md): zero-shot and random-label runs of the four
# text-classification tasks, in two single-thread queues (one per core). Resumable: running
# it again finishes what is unfinished and skips what is done.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/learn}
STAR=.venv/bin/star
# FROZEN=DIR/src runs a frozen copy of the code while the working tree changes
[ -n "${FROZEN:-}" ] && export PYTHONPATH=$FROZEN
export OMP_NUM_THREADS=1
run() {  # task seed
  $STAR sweep --config configs/learnability/$1.yaml --strategies random --seeds $2 \
    --out $OUT/$1 --jobs 1 --threads 1
}
zero_shot() {  # task: the base model, untrained (epochs 0), evaluated once
  $STAR run --config configs/learnability/$1.yaml --schedule 64 --epochs 0 -q \
    --out $OUT/zero-shot/$1 > /dev/null
}
# Cheapest tasks first, so that a stopped queue leaves whole tasks: trec and sst2 cost about
# 10 single-thread minutes a run here, ag_news and banking77 (long texts; 77 multi-token
# labels to score per evaluation row) several times that.
zero_shot_paper() {  # task mode: the paper's tasks zero-shot, in both evaluation modes
  $STAR run --config configs/paper-tasks-cpu/$1.yaml --strategy random --schedule 32 --epochs 0 \
    --eval-mode $2 -q --out $OUT/zero-shot-paper/$1-$2 > /dev/null
}
queue_a() {
  for t in trec sst2 ag_news banking77; do zero_shot $t; done
  for s in 0 1 2; do run trec $s; done
  for s in 0 1 2; do run ag_news $s; done
}
queue_b() {
  for s in 0 1 2; do run sst2 $s; done
  for s in 0 1 2; do run banking77 $s; done
  for t in obqa boolq; do for m in options generate; do zero_shot_paper $t $m; done; done
  run boolq 0  # seeds 1, 2 and obqa: not run yet (docs/results.md)
}
queue_a > $OUT.a.log 2>&1 &
queue_b > $OUT.b.log 2>&1 &
wait
