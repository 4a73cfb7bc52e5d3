#!/usr/bin/env bash
# The frontier study (docs/results.md#the-frontier-study), both tasks one after the other; each
# command resumes where it stopped. About 8.5 hours on 2 CPU cores.
#     setsid nohup bash scripts/study.sh > runs/study.log 2>&1 &
set -uo pipefail
cd "$(dirname "$0")/.."
echo "task 1 start $(date -u +%FT%TZ)"
s3ft compare recipes/study_frontier_squad.yaml
echo "task 1 rc=$? $(date -u +%FT%TZ)"
s3ft compare recipes/study_frontier_squad_sentence.yaml
echo "task 2 rc=$? $(date -u +%FT%TZ)"
