#!/bin/bash
# Rebuild docs/results/ from the runs behind docs/results.md (the sweep commands are listed
# there). Reports keep summary.md, runs.csv and the PNG figures; the SVG copies are dropped to
# keep the repository small.
set -euo pipefail
cd "$(dirname "$0")/.."
STAR=${STAR:-.venv/bin/star}
OUT=docs/results
report() {  # report NAME [star report options...] RUNS...
  local name=$1; shift
  rm -rf "$OUT/$name"
  "$STAR" report "$@" --out "$OUT/$name" > /dev/null
  rm -f "$OUT/$name"/*.svg
  sed -i "s#$PWD/##g" "$OUT/$name/summary.md" "$OUT/$name/runs.csv"
}
# Each part is rebuilt only where its runs exist on this machine (runs are not committed).
if [ -d runs/sweep-mix ]; then
  report mix runs/sweep-mix
  report mix-round0 --rounds 1 runs/sweep-mix
  report paper-obqa runs/paper-obqa
  report paper-obqa-round0 --rounds 1 runs/paper-obqa
  report paper-boolq runs/paper-boolq
  report paper-boolq-round0 --rounds 1 runs/paper-boolq
  report zero-shot runs/zero-shot
  for r in "$OUT"/*-round0 "$OUT"/zero-shot; do rm -f "$r"/*.png; done  # one point per curve
  .venv/bin/python scripts/breakdown.py runs/sweep-mix > "$OUT/mix/by_kind.md"
fi
# The learnability table (scripts/learnability.sh): one report per task, and the table.
if [ -d runs/learn ]; then
  for task in runs/learn/*/; do
    name=$(basename "$task")
    case $name in zero-shot*) continue ;; esac
    report "learnability/$name" "$task"
  done
  report learnability/zero-shot runs/learn/zero-shot
  [ -d runs/learn/zero-shot-paper ] && report learnability/zero-shot-paper runs/learn/zero-shot-paper
  rm -f "$OUT"/learnability/zero-shot*/*.png
  .venv/bin/python scripts/learnability_table.py runs/learn > "$OUT/learnability/table.md"
fi
# Strategy comparisons of issue 15 (configs/selection; commands in docs/results.md): random
# against typical and pe-kmeanspp at 5 seeds per task, and the trec screen of the other
# strategies (its own report, since its runs have fewer seeds and rounds).
for task in trec sst2 mix banking77; do
  runs=$(ls -d runs/select-$task/{random,typical,pe-kmeanspp}-seed* 2>/dev/null || true)
  if [ -n "$runs" ]; then
    report "selection/$task" $runs
    .venv/bin/python scripts/breakdown.py $runs > "$OUT/selection/$task/by_group.md"
  fi
done
screen=$(ls -d runs/select-trec/{random,star,star-authors}-seed0 2>/dev/null || true)
if [ -n "$screen" ]; then
  report selection/trec-screen $screen
  .venv/bin/python scripts/breakdown.py $screen > "$OUT/selection/trec-screen/by_group.md"
fi
# The label-free uncertainty selectors against random on trec: the 2-seed screen of pe-cluster
# and pe-kmeanspp, and pe-kmeanspp's confirmation at 5 seeds.
lf=$(ls -d runs/select-trec/{random,pe-cluster,pe-kmeanspp}-seed* 2>/dev/null || true)
if [ -n "$lf" ]; then
  report selection/trec-label-free $lf
  .venv/bin/python scripts/breakdown.py $lf > "$OUT/selection/trec-label-free/by_group.md"
fi
# Larger budgets: sst2 from 16 to 256 labels (configs/selection/sst2-budget.yaml).
if [ -d runs/budget-sst2 ]; then
  report selection/sst2-budget runs/budget-sst2/*-seed*
  .venv/bin/python scripts/breakdown.py runs/budget-sst2/*-seed* > "$OUT/selection/sst2-budget/by_group.md"
fi
# The epoch choice on random's runs alone (scripts/training_noise.py --epochs E), and the
# comparison again at the chosen epochs: runs/selectE-TASK (configs/selection/TASK.yaml).
epochs=$(ls -d runs/noise-{trec/offset0,e4,e8,e16,e32,sst2-e*,mix-e*,banking77-e*}/ runs/select-{sst2,mix,banking77}/random-seed0 2>/dev/null || true)
[ -n "$epochs" ] && .venv/bin/python scripts/epochs_table.py $epochs > "$OUT/selection/epochs.md"
# runs/selectE-TASK-init: strategies whose round 0 is random's (--init-by random), same report.
for dir in runs/select[0-9]*-*/; do  # folders only: sweep logs sit beside them
  dir=${dir%/}
  case $dir in *-init) continue ;; esac
  name=${dir#runs/select}  # E-TASK
  dirs=$(ls -d "$dir" "$dir-init" 2>/dev/null)
  report "selection/${name#*-}-e${name%%-*}" $dirs
  .venv/bin/python scripts/breakdown.py $dirs > "$OUT/selection/${name#*-}-e${name%%-*}/by_group.md"
done
