"""Config loading: YAML + --set overrides, and errors that name the key and the fix."""

import re

import pytest

from r1lab.config import ConfigError, GRPOConfig, load_config


def test_yaml_then_overrides_win(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("train:\n  lr: 3.0e-5\n  steps: 7\nrollout:\n  group_size: 4\n")
    cfg = load_config(GRPOConfig, path, ["train.steps=9", "rewards.weights={accuracy: 1.0, format: 0.5}"])
    assert cfg.train.lr == 3e-5  # from YAML
    assert cfg.train.steps == 9  # --set beats YAML
    assert cfg.rollout.group_size == 4
    assert cfg.rewards.weights == {"accuracy": 1.0, "format": 0.5}
    assert cfg.algo.advantage == "grpo"  # untouched default


def test_int_given_for_float_is_accepted():
    assert load_config(GRPOConfig, None, ["train.lr=1"]).train.lr == 1.0


@pytest.mark.parametrize(
    "override, expected",
    [
        ("train.lrr=1e-5", "Did you mean 'train.lr'?"),  # typo in a leaf key
        ("trian.lr=1e-5", "Did you mean 'train'?"),  # typo in a section
        ("algo.advantage=ppo", "allowed values: grpo, dr_grpo, rloo"),  # value outside the choices
        ("rollout.group_size=1", "rollout.group_size"),  # cross-field check names the key
        ("train.steps=abc", "expected int"),  # wrong type
        ("rewards.weights={accuracy: 1, formt: 1}", "Did you mean 'format'?"),  # unknown reward function
        ("noequals", "expected KEY=VALUE"),
    ],
)
def test_config_errors_name_the_key(override, expected):
    with pytest.raises(ConfigError, match=expected.replace("?", r"\?").replace("(", r"\(")):
        load_config(GRPOConfig, None, [override])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(GRPOConfig, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(GRPOConfig, bad)


@pytest.mark.parametrize("override, message", [
    # (the --set value, what the error names) - reward params are checked when the config loads, not at step 1
    ("rewards.params={repetition: {n: 2}}", "params.repetition': reward 'repetition': unknown parameter(s) n"),
    ("rewards.params={math: {timeout: -1}}", "params.math': reward 'math': parameter 'timeout' must be a number"),
    ("rewards.params={code: {speed: 1}}", "params.code': reward 'code': unknown parameter 'speed'"),
    ("rewards.params={accuracy: {strict: true}}", "reward 'accuracy' takes no parameters, got strict"),
])
def test_reward_params_are_checked_at_load(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(GRPOConfig, overrides=[override])


def test_default_task_params_apply_to_rg_tasks_only():
    cfg = load_config(GRPOConfig, overrides=["task.name=humaneval"])
    assert cfg.task.resolved_params() == {}
    assert load_config(GRPOConfig).task.resolved_params()["operators"] == ["+"]
    cfg = load_config(GRPOConfig, overrides=["task.name=math:x.jsonl", "task.params={timeout: 3}"])
    assert cfg.task.resolved_params() == {"timeout": 3}
