"""The build stage's training file is TRL's conversational prompt-completion format: TRL's own
dataset loading (what `trl sft` runs) and data utilities read it as it is, and an SFTTrainer built
on it the way `trl sft` builds one trains on the same tokens as s3ft's training - as do the
training files of older run directories, whose completion is the bare text."""
from __future__ import annotations

from s3ft.config import S3FTConfig
from s3ft.runs import RunDir, read_jsonl
from s3ft.types import Example

SYSTEM = {"role": "system", "content": "Be brief."}


def _build(tmp_path, n: int = 6):
    from s3ft.stages.build import build
    from s3ft.stages.common import Stages

    exs = [Example(f"q{i}", [SYSTEM, {"role": "user", "content": f"{i}+{i}?"}], f"Answer: {2 * i}", {})
           for i in range(n)]
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    return build(Stages(run, frozenset(), set()), "sft", exs, None, None), exs


def _trl_sft_dataset(path):
    """The training split as `trl sft` loads it from a config's `datasets: [{path: json, data_files: FILE}]`."""
    from trl import DatasetMixtureConfig, get_dataset
    from trl.scripts.utils import DatasetConfig

    return get_dataset(DatasetMixtureConfig(datasets=[DatasetConfig(path="json", data_files=str(path))]))["train"]


def test_training_file_is_trl_conversational_prompt_completion(tmp_path, tiny_model_dir):
    from trl.data_utils import is_conversational, maybe_apply_chat_template

    from s3ft.models import load_tokenizer
    from s3ft.selection import completion_text

    path, exs = _build(tmp_path)
    rows = read_jsonl(path)
    assert rows[1]["prompt"] == exs[1].prompt
    assert rows[1]["completion"] == [{"role": "assistant", "content": "Answer: 2"}]
    assert [completion_text(r) for r in rows] == [e.gold for e in exs]
    ds = _trl_sft_dataset(path)
    assert len(ds) == len(exs) and all(is_conversational(r) for r in ds)
    tok = load_tokenizer(str(tiny_model_dir))
    text = maybe_apply_chat_template(ds[1], tok)
    assert text["prompt"] == tok.apply_chat_template(exs[1].prompt, tokenize=False, add_generation_prompt=True)
    assert text["completion"] == "Answer: 2<|im_end|>\n"


def test_trl_sft_trains_on_the_tokens_s3ft_trains_on(tmp_path, tiny_model_dir):
    """SFTTrainer on the file as `trl sft` loads it (model by name, TRL's defaults), s3ft's
    trainer on the file, and s3ft's trainer on the same rows with text completions (a run
    directory written before) tokenise and supervise the same tokens."""
    from trl import SFTConfig, SFTTrainer

    from s3ft.training import build_trainer

    path, _ = _build(tmp_path)
    cfg = S3FTConfig(model=str(tiny_model_dir), device="cpu", max_length=256, per_device_train_batch_size=2)
    ours, _ = build_trainer(read_jsonl(path), cfg, tmp_path / "ours")
    old_rows = [{**r, "completion": r["completion"][0]["content"]} for r in read_jsonl(path)]
    old, _ = build_trainer(old_rows, cfg, tmp_path / "old")
    theirs = SFTTrainer(model=str(tiny_model_dir), train_dataset=_trl_sft_dataset(path),
                        args=SFTConfig(output_dir=str(tmp_path / "trl"), use_cpu=True, report_to="none"))
    want = ours.train_dataset
    supervised = [[t for t in seq if t != -100] for seq in want["labels"]]
    assert all(len(s) > 2 for s in supervised) and len(want) == 6  # (every row supervises its answer)
    for other in (old.train_dataset, theirs.train_dataset):
        assert other["input_ids"] == want["input_ids"]
        assert other["labels"] == want["labels"]
