#!/usr/bin/env bash
# The learnability table (docs/results.md): zero-shot and random-label runs of the four
# text-classification tasks, in two single-thread queues (one per core). Resumable: running
# it again finishes what is unfinished and skips what is done.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/learn}
STAR=.venv/bin/star
export OMP_NUM_THREADS=1
run() {  # task seed
  $STAR sweep --config configs/learnability/$1.yaml --strategies random --seeds $2 \
    --out $OUT/$1 --jobs 1 --threads 1
}
zero_shot() {  # task: the base model, untrained (epochs 0), evaluated once
  $STAR run --config configs/learnability/$1.yaml --schedule 64 --epochs 0 -q \
    --out $OUT/zero-shot/$1 > /dev/null
}
queue_a() {
  for t in trec sst2 ag_news banking77; do zero_shot $t; done
  run trec 0; run ag_news 0; run sst2 1; run banking77 1; run trec 2; run ag_news 2
}
queue_b() {
  run sst2 0; run banking77 0; run trec 1; run ag_news 1; run sst2 2; run banking77 2
}
queue_a > $OUT.a.log 2>&1 &
queue_b > $OUT.b.log 2>&1 &
wait
