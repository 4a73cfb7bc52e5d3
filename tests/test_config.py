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
    ("method: rft\n", "method must be one of sft, ssr, sdft, s3ft"),
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
