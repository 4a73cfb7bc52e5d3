import pytest

from s3ft.config import ConfigError, S3FTConfig, load_config, parse_overrides


def write(tmp_path, text, name="r.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_recipe_and_overrides(tmp_path):
    p = write(tmp_path, "task: gsm8k\nlearning_rate: 3.0e-4\nlora_target_modules: [q_proj, v_proj]\ntrain_size: 10\n")
    cfg = load_config(p, ["--learning_rate", "1e-5", "--use_peft", "false", "--train_size=null"])
    assert cfg.task == "gsm8k"
    assert cfg.learning_rate == 1e-5
    assert cfg.use_peft is False
    assert cfg.train_size is None
    assert cfg.lora_target_modules == ["q_proj", "v_proj"]
    assert cfg.lora_r == S3FTConfig().lora_r


def test_bare_bool_flag():
    assert parse_overrides(["--allow_code_execution"]) == {"allow_code_execution": True}
    assert parse_overrides(["--allow-code-execution", "--seed", "3"]) == {"allow_code_execution": True, "seed": 3}


@pytest.mark.parametrize("text,needle", [
    ("task: squad\nlearnig_rate: 1e-4\n", "line 2: unknown key 'learnig_rate' (did you mean 'learning_rate'?)"),
    ("train_size: lots\n", "line 1: field 'train_size' expects int"),
    ("use_peft: maybe\n", "field 'use_peft' expects bool"),
    ("task: squad\n  bad: [\n", "invalid YAML"),
    ("- a\n- b\n", "expected a mapping"),
    ("method: xft\n", "method must be one of sft, ssr, sdft, s3ft"),
    ("task: sqaud\n", "unknown task 'sqaud' (did you mean 'squad'?)"),
    ("task: jsonl\n", "task jsonl needs data_files"),
    ("judge: mth\n", "unknown judge 'mth' (did you mean 'math'?)"),
    ("learning_rate: 0\n", "learning_rate must be > 0"),
    ("model: null\n", "field 'model' must not be empty"),
    ("lora_target_modules: {a: 1}\n", "field 'lora_target_modules' expects list[str]"),
])
def test_bad_recipes_name_file_line_and_field(tmp_path, text, needle):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert needle in str(e.value)
    assert str(p) in str(e.value)


def test_bad_overrides():
    with pytest.raises(ConfigError, match="did you mean 'num_train_epochs'"):
        parse_overrides(["--num_train_epoch", "2"])
    with pytest.raises(ConfigError, match="needs a value"):
        parse_overrides(["--seed"])
    with pytest.raises(ConfigError, match="unexpected argument"):
        parse_overrides(["seed", "3"])


def test_missing_recipe(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_rows_per_call_follows_batch_size_or_the_stage_default():
    from s3ft.config import S3FTConfig

    auto = S3FTConfig(batch_size=0)
    assert [auto.rows_per_call(k) for k in ("judge_flush", "lm_eval", "logprob")] == [32, 16, 8]
    fixed = S3FTConfig(batch_size=6)
    assert [fixed.rows_per_call(k) for k in ("judge_flush", "lm_eval", "logprob")] == [6, 6, 3]
    assert S3FTConfig(batch_size=1).rows_per_call("logprob") == 1
    assert "AUTOMATIC_ROWS" not in S3FTConfig().to_dict()  # a constant, not a recipe field


def test_every_shipped_recipe_loads_and_validates():
    from pathlib import Path

    from s3ft.compare import tuning_candidates
    from s3ft.config import load_config

    recipes = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))
    assert len(recipes) >= 8
    for path in recipes:
        cfg = load_config(path)  # unknown keys, wrong types and bad values raise, naming file and line
        assert cfg.output_dir.startswith("runs/"), path.name
        tuning_candidates(cfg)  # the tuning grid, where there is one, parses


# ---------------------------------------------------------------- ranges and choices of every key
def test_every_numeric_key_has_a_range_and_every_choice_key_its_values():
    import dataclasses

    from s3ft.config import FIELDS, _type_str

    for name, f in FIELDS.items():
        t = _type_str(name).replace(" ", "")
        if t.split("|")[0] in ("int", "float", "list[int]", "list[float]"):
            assert {"ge", "gt", "le", "lt"} & set(f.metadata), f"{name}: a numeric key without a range"
    for name in ("method", "dtype", "backend", "qa_policy", "on_invalid", "paraphrase_scope", "lr_scheduler_type",
                 "saved_activations", "vllm_distributed_executor_backend"):
        assert FIELDS[name].metadata.get("choices"), name
    assert dataclasses.is_dataclass(S3FTConfig)


def test_choice_lists_match_the_libraries_they_name():
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK
    from transformers.trainer_utils import SchedulerType

    from s3ft.config import LR_SCHEDULERS, TRACKERS
    from s3ft.judges.qa import POLICIES

    assert set(LR_SCHEDULERS) == {s.value for s in SchedulerType}
    assert set(TRACKERS) == set(INTEGRATION_TO_CALLBACK)
    assert S3FTConfig.__dataclass_fields__["qa_policy"].metadata["choices"] == POLICIES


@pytest.mark.parametrize("text,needle", [
    # settings that used to pass validation and silently ruin a run
    ("learning_rate: .inf\n", "learning_rate must be a finite number > 0, got inf"),
    ("learning_rate: .nan\n", "learning_rate must be a finite number > 0, got nan"),
    ("lora_alpha: 0\n", "lora_alpha must be >= 1, got 0"),
    ("qa_policy: contain\n", "qa_policy must be one of em, contains, f1, contains_or_f1, got 'contain' (did you mean 'contains'?)"),
    ("qa_f1_threshold: 5\n", "qa_f1_threshold must be in (0, 1], got 5.0"),
    ("judge_workers: -4\n", "judge_workers must be >= 0, got -4"),
    ("num_train_epochs: .inf\n", "num_train_epochs must be a finite number > 0, got inf"),
    ("temperature: -1\n", "temperature must be in [0, 100], got -1.0"),
    ("top_p: 0\n", "top_p must be in (0, 1], got 0.0"),
    ("weight_decay: .inf\n", "weight_decay must be a finite number >= 0, got inf"),
    ("save_steps: 0\n", "save_steps must be >= 1, got 0"),
    ("paraphrase_max_new_tokens: 0\n", "paraphrase_max_new_tokens must be >= 1 or null, got 0"),
    ("vllm_gpu_memory_utilization: 1.5\n", "vllm_gpu_memory_utilization must be in (0, 1], got 1.5"),
    ("seed: -1\n", "seed must be in [0, 4294967295], got -1"),
    ("batch_size: 100000000000000000000\n", "batch_size must be below 2**63"),
    ("seeds: [1, -2]\n", "seeds must be numbers in [0, 4294967295], got [1, -2]"),
    ("tune_learning_rates: [1.0e-4, .inf]\n", "tune_learning_rates must be positive finite numbers, got [0.0001, inf]"),
    ("judge_timeout: 0\n", "judge_timeout must be > 0, got 0.0"),
    ("device: banana\n", "device must be auto, cpu, cuda or cuda:N, got 'banana'"),
    ("lr_scheduler_type: cosin\n", "lr_scheduler_type must be one of linear, cosine"),
    ("report_to: wandb,tensorbord\n", "report_to: unknown tracker 'tensorbord' (did you mean 'tensorboard'?)"),
    ("vllm_distributed_executor_backend: rey\n", "vllm_distributed_executor_backend must be one of mp, ray"),
    ("output_dir: /\n", "output_dir '/' is the filesystem root"),
    ("output_dir: ''\n", "field 'output_dir' must not be empty"),
    ("train_split: ' '\n", "field 'train_split' must not be empty"),
    ("sweep_measures: [kl_generl]\n", "sweep_measures: unknown 'kl_generl' (did you mean 'kl_general'?)"),
    ("sweep_measures: [mc_drop]\n", "sweep_measures: mc_drop is not measured: set general_benchmarks"),
])
def test_out_of_range_and_misspelled_settings_are_refused_at_load(tmp_path, text, needle):
    p = write(tmp_path, "task: squad\n" + text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert f"{p} line 2: " in str(e.value) and needle in str(e.value), str(e.value)


def test_sweep_measures_keep_the_budgets_measure(tmp_path):
    p = write(tmp_path, "task: squad\ndrift: true\nifeval: true\nforgetting_measure: ifeval_drop\nforgetting_max: 5\n"
                        "sweep_measures: [kl_general]\n")
    with pytest.raises(ConfigError, match="sweep_measures leaves out forgetting_measure ifeval_drop"):
        load_config(p)
    assert load_config(p, {"sweep_measures": ["kl_general", "ifeval_drop"]}).sweep_measures == ["kl_general", "ifeval_drop"]


def test_the_same_ranges_hold_on_the_command_line():
    with pytest.raises(ConfigError, match=r"command line --learning_rate: learning_rate must be a finite number > 0, got inf"):
        load_config(None, ["--learning_rate", "inf"])
    with pytest.raises(ConfigError, match=r"command line --device: device must be auto, cpu, cuda or cuda:N"):
        load_config(None, ["--device", "banana"])
    cfg = load_config(None, ["--device", "cuda:1", "--report_to", "tensorboard,wandb", "--judge_timeout", "2.5"])
    assert (cfg.device, cfg.report_to, cfg.judge_timeout) == ("cuda:1", "tensorboard,wandb", 2.5)


# ---------------------------------------------------------------- hostile recipes
def test_duplicate_keys_are_errors_not_last_one_wins(tmp_path):
    p = write(tmp_path, "task: squad\nlearning_rate: 1.0e-4\nseed: 3\nlearning_rate: 1.0e-3\n")
    with pytest.raises(ConfigError, match=r"line 4: invalid YAML: duplicate key 'learning_rate' \(also on line 2\)"):
        load_config(p)
    p = write(tmp_path, "task: jsonl\ndata_files:\n  train: a.jsonl\n  train: b.jsonl\n")
    with pytest.raises(ConfigError, match=r"line 4: invalid YAML: duplicate key 'train' \(also on line 3\)"):
        load_config(p)
    with pytest.raises(ConfigError, match=r"command line --data_files: duplicate key 'train'"):
        parse_overrides(["--data_files", "{train: a.jsonl, train: b.jsonl}"])
    # a merge key overriding what it merges is not a duplicate
    p = write(tmp_path, "task: jsonl\ndata_files:\n  <<: {train: a.jsonl, test: b.jsonl}\n  test: c.jsonl\n")
    from s3ft.config import read_recipe

    assert read_recipe(p)["data_files"][0] == {"train": "a.jsonl", "test": "c.jsonl"}


BILLION_LAUGHS = "\n".join(
    ["lora_target_modules:", '  - &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"  - &{y} [" + ",".join([f"*{x}"] * 9) + "]" for x, y in zip("abcdefgh", "bcdefghi")]) + "\n"


def test_a_billion_laughs_recipe_fails_fast_with_a_short_message(tmp_path):
    """Anchors of anchors: a value of 10^9 strings held in a few kilobytes. The message that shows
    it must not expand it (it used to hang, building that string)."""
    import subprocess
    import sys

    p = write(tmp_path, BILLION_LAUGHS)
    code = f"from s3ft.config import load_config\ntry:\n    load_config({str(p)!r})\nexcept Exception as e:\n    print(e)\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert f"{p} line 1: field 'lora_target_modules' expects list[str], got [[" in r.stdout
    assert len(r.stdout) < 400


@pytest.mark.parametrize("text,needle", [
    ("lora_target_modules: " + "[" * 20000 + "]" * 20000 + "\n", "nested too deeply to read"),
    ("seed: 1" + "0" * 5000 + "\n", "line 1: invalid YAML: cannot read the value: an integer of more than 4300 digits"),
    ("seed: 1" + "0" * 4000 + "\n", "line 1: seed must be in [0, 4294967295], got <an integer of about 4001 digits>"),
    ('model: "caf\\ud800"\n', "line 1: field 'model': the value holds a lone surrogate \\ud800"),
    ("data_files: {train: [a.jsonl, [b.jsonl]]}\n", "field 'data_files', key 'train': expected a file path or a "
                                                     "non-empty list of file paths, got ['a.jsonl', ['b.jsonl']]"),
    ("data_files: {train: []}\n", "key 'train': expected a file path or a non-empty list of file paths, got []"),
], ids=["deep", "5000 digits", "4000 digits", "surrogate", "list in list", "empty list"])
def test_recipes_that_used_to_raise_tracebacks(tmp_path, text, needle):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(p) in str(e.value) and needle in str(e.value), str(e.value)


def test_recipe_that_is_not_a_regular_file(tmp_path):
    import os

    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match=r"fifo.yaml: is a FIFO \(named pipe\), not a regular recipe"):
        load_config(fifo)  # (reading it would block forever)
    loop = tmp_path / "loop.yaml"
    loop.symlink_to(loop)
    with pytest.raises(ConfigError, match=r"loop.yaml: is a symbolic link loop"):
        load_config(loop)


def test_bytes_that_are_not_utf8_on_the_command_line_are_refused(tmp_path):
    """sys.argv carries them as lone surrogates; such a value used to be accepted and then fail
    when the manifest was written, leaving a 0-byte manifest.json.tmp."""
    with pytest.raises(ConfigError, match=r"command line --output_dir: the value holds the byte 0xe9, which is not UTF-8"):
        load_config(None, ["--output_dir", "runs/caf\udce9"])
    with pytest.raises(ConfigError, match=r"command line --lora_target_modules: the value holds the byte 0xff"):
        parse_overrides(["--lora_target_modules", "q_proj,\udcff"])
    with pytest.raises(ConfigError, match=r"override model: field 'model': the value holds a lone surrogate"):
        load_config(None, {"model": "x\ud800"})


def test_home_folder_in_paths_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    p = write(tmp_path, "task: jsonl\noutput_dir: ~/runs/x\ndata_files: {train: [~/a.jsonl, hf://datasets/o/n/f.parquet], test: ~/b.jsonl}\n")
    cfg = load_config(p)
    assert cfg.output_dir == f"{tmp_path}/runs/x"  # not ./~/runs/x
    assert cfg.data_files == {"train": [f"{tmp_path}/a.jsonl", "hf://datasets/o/n/f.parquet"], "test": f"{tmp_path}/b.jsonl"}
