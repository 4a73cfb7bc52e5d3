#!/usr/bin/env bash
# The frontier study: both tasks one after the other, each resuming where it stopped. About 12
# hours on 2 CPU cores (docs/results.md#protocol).
#     setsid nohup bash scripts/study.sh > runs/study.log 2>&1 &
#
# The runs can be carried to a new checkout or machine without their model weights:
#     bash scripts/study.sh save   # each run folder, pruned (s3ft prune --to), -> bench/results/<study>/run
# and `bash scripts/study.sh` starts from those copies where runs/ has no run yet. A result not
# in yet whose model was pruned makes that model again (s3ft.compare.remake_pruned).
set -uo pipefail
cd "$(dirname "$0")/.."
STUDIES=(study_frontier_squad study_frontier_squad_sentence)
run_dir() { echo "runs/${1//_/-}"; }  # study_frontier_squad -> runs/study-frontier-squad (the recipes' output_dir)

if [[ "${1:-}" == "save" ]]; then
    for study in "${STUDIES[@]}"; do
        src=$(run_dir "$study") dst="bench/results/$study/run"
        [[ -f "$src/manifest.json" ]] || continue
        tmp=$(mktemp -d)
        s3ft prune "$src" --to "$tmp/run" || { rm -rf "$tmp"; exit 1; }
        rm -rf "$dst" && mkdir -p "$(dirname "$dst")" && mv "$tmp/run" "$dst" && rmdir "$tmp"
        echo "saved $src -> $dst ($(du -sh "$dst" | cut -f1))"
    done
    exit 0
fi

mkdir -p runs
for study in "${STUDIES[@]}"; do
    src="bench/results/$study/run" dst=$(run_dir "$study")
    if [[ ! -e "$dst" && -f "$src/manifest.json" ]]; then
        cp -r "$src" "$dst" && echo "$dst: resumed from the saved run $src"
    fi
done
echo "task 1 start $(date -u +%FT%TZ)"
s3ft compare recipes/study_frontier_squad.yaml
echo "task 1 rc=$? $(date -u +%FT%TZ)"
s3ft compare recipes/study_frontier_squad_sentence.yaml
echo "task 2 rc=$? $(date -u +%FT%TZ)"
