"""hf: tasks: GSM8K-, MATH-500- and Countdown-shaped datasets from every layout (JSONL, Parquet shards, save_to_disk
folders, a folder of split files, a hub id in the hub cache or in the datasets cache), the column mapping, the
answer formats, the scorers, and errors that name the key and list what the dataset has."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r1lab.config import ConfigError, GRPOConfig, TaskConfig, load_config
from r1lab.data.hf_source import DatasetSourceError
from r1lab.tasks import load_task, load_task_config
from r1lab.tasks.hf import gold_answer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

GSM8K_README = """---
configs:
- config_name: main
  data_files:
  - split: train
    path: main/train-*
  - split: test
    path: main/test-*
- config_name: socratic
  data_files:
  - split: train
    path: socratic/train-*
---
A GSM8K-shaped dataset card.
"""

GSM8K_GOLD = {"A baker makes 24 muffins": "12", "Maria reads 15 pages": "90", "A box holds 8 pencils": "1000",
              "Tom had $50.": "32.5", "A parking lot has 3 red cars": "9", "A train travels 60 miles": "180"}


def gold_by_start(examples) -> dict[str, str]:
    return {next(k for k in GSM8K_GOLD if e.question.startswith(k)): e.answer for e in examples}


def test_gsm8k_jsonl_questions_and_final_answers(rows):
    path = FIXTURES / "gsm8k_style.jsonl"
    task = load_task_config(TaskConfig(name=f"hf:{path}", eval_size=2, seed=0))
    assert task.name == f"hf:{path}" and (len(task.train), len(task.eval)) == (4, 2)
    examples = task.train + task.eval
    assert gold_by_start(examples) == GSM8K_GOLD  # "#### 1,000" -> "1000"
    assert {e.question for e in examples} == {r["question"] for r in rows("gsm8k_style.jsonl")}
    assert all(e.meta == {} and e.messages is None for e in examples)  # question and answer are the only columns
    assert sorted(e.id for e in examples) == [f"{path}:train[{i}]" for i in range(6)]


def test_math500_parquet_shards_gold_from_answer_or_boxed_solution(tmp_path, rows):
    import datasets

    math = rows("math500_style.jsonl")
    (tmp_path / "shards").mkdir()
    datasets.Dataset.from_list(math[:3]).to_parquet(str(tmp_path / "shards" / "test-00000-of-00002.parquet"))
    datasets.Dataset.from_list(math[3:]).to_parquet(str(tmp_path / "shards" / "test-00001-of-00002.parquet"))
    source = f"hf:{tmp_path}/shards/test-*.parquet"
    task = load_task_config(TaskConfig(name=source, eval_size=2, seed=0))
    examples = sorted(task.train + task.eval, key=lambda e: e.meta["unique_id"])
    assert [e.question for e in examples] == [r["problem"] for r in sorted(math, key=lambda r: r["unique_id"])]
    assert [e.answer for e in examples] == [r["answer"] for r in sorted(math, key=lambda r: r["unique_id"])]
    first = next(e for e in examples if e.meta["unique_id"] == "test/prealgebra/101.json")
    assert first.meta == {"solution": math[0]["solution"], "subject": "Prealgebra", "level": 2,
                          "unique_id": "test/prealgebra/101.json"}
    # The gold can come from the worked solution's last \boxed{} instead
    boxed = load_task_config(TaskConfig(name=source, answer_field="solution", eval_size=2, seed=0))
    golds = {e.meta["unique_id"]: e.answer for e in boxed.train + boxed.eval}
    assert golds == {"test/prealgebra/101.json": r"\frac{7}{8}", "test/algebra/102.json": "6",
                     "test/prealgebra/103.json": r"5\sqrt{2}", "test/number_theory/104.json": "6",
                     "test/geometry/105.json": "720", "test/intermediate_algebra/106.json": "(-2, 2)"}
    # Scored by math-verify, as math: tasks: an equal value in another form is right
    seven_eighths = next(e for e in task.train + task.eval if e.answer == r"\frac{7}{8}")
    assert task.score("0.875", seven_eighths) == 1.0 and task.score("7/9", seven_eighths) == 0.0


def test_save_to_disk_folder_with_train_and_test_splits(tmp_path, rows):
    import datasets

    gsm = rows("gsm8k_style.jsonl")
    folder = tmp_path / "gsm8k_saved"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(gsm[:4]),
                          "test": datasets.Dataset.from_list(gsm[4:])}).save_to_disk(str(folder))
    task = load_task_config(TaskConfig(name=f"hf:{folder}", eval_split="test", eval_size=5))
    assert [e.question for e in task.eval] == [r["question"] for r in gsm[4:]]  # the whole (2-row) split, in order
    assert [e.id for e in task.eval] == [f"{folder}:test[0]", f"{folder}:test[1]"]
    assert [e.answer for e in task.eval] == ["9", "180"]
    assert [e.question for e in task.train] == [r["question"] for r in gsm[:4]]
    # The held-out rows are the first task.eval_size of the split
    assert [e.answer for e in load_task_config(TaskConfig(name=f"hf:{folder}", eval_split="test", eval_size=1)).eval] \
        == ["9"]
    # A single saved Dataset is split "train"
    single = tmp_path / "single"
    datasets.Dataset.from_list(gsm).save_to_disk(str(single))
    assert len(load_task_config(TaskConfig(name=f"hf:{single}", eval_size=2)).train) == 4
    with pytest.raises(DatasetSourceError, match=r"no split 'test' \(task.train_split, task.eval_split\); its "
                                                 r"splits: train"):
        load_task_config(TaskConfig(name=f"hf:{single}", eval_split="test"))


def test_folder_of_split_files_and_a_bom(tmp_path, rows):
    gsm = rows("gsm8k_style.jsonl")
    folder = tmp_path / "files"
    folder.mkdir()
    # datasets names splits after the files; a leading byte-order mark is not part of the first row
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in gsm[:5]), encoding="utf-8-sig")
    (folder / "test.jsonl").write_text(json.dumps(gsm[5]) + "\n")
    task = load_task_config(TaskConfig(name=f"hf:{folder}", eval_split="test", eval_size=200))
    assert [e.answer for e in task.eval] == ["180"]
    assert sorted(e.answer for e in task.train) == ["1000", "12", "32.5", "9", "90"]


def test_hub_id_from_the_hub_cache(hf_caches, rows):
    gsm = rows("gsm8k_style.jsonl")
    hf_caches.snapshot("openai/gsm8k", {"README.md": GSM8K_README, "main/train-00000-of-00001.parquet": gsm[:4],
                                        "main/test-00000-of-00001.parquet": gsm[4:]})
    task = load_task_config(TaskConfig(name="hf:openai/gsm8k", subset="main", eval_split="test"))
    assert [e.answer for e in task.eval] == ["9", "180"] and len(task.train) == 4
    assert task.eval[0].id == "openai/gsm8k:test[0]"
    with pytest.raises(DatasetSourceError, match="has several subsets, choose one with task.subset: main, socratic"):
        load_task_config(TaskConfig(name="hf:openai/gsm8k", eval_split="test"))
    with pytest.raises(DatasetSourceError, match=r"no subset 'mian' \(task.subset\); its subsets: main, socratic"):
        load_task_config(TaskConfig(name="hf:openai/gsm8k", subset="mian"))


def test_hub_id_from_the_datasets_cache_offline_whatever_the_environment(hf_caches, rows, monkeypatch):
    import datasets

    gsm = rows("gsm8k_style.jsonl")
    hf_caches.prepared("openai/gsm8k", "main", {"train": gsm[:4], "test": gsm[4:]})
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)  # as on a machine with network access
    task = load_task_config(TaskConfig(name="hf:openai/gsm8k", subset="main", eval_split="test"))
    assert [e.answer for e in task.eval] == ["9", "180"] and len(task.train) == 4
    assert datasets.config.HF_HUB_OFFLINE is False  # offline only for the one load


def test_hub_id_in_no_cache_says_how_to_fetch_it(hf_caches):
    with pytest.raises(DatasetSourceError, match=r"never downloads.*hf download --repo-type dataset nobody/nothing"):
        load_task_config(TaskConfig(name="hf:nobody/nothing"))
    with pytest.raises(DatasetSourceError, match="no such file"):
        load_task_config(TaskConfig(name="hf:missing/data/train.parquet"))


def test_bad_columns_and_splits_name_the_key_and_list_what_is_there(tmp_path):
    gsm, countdown = FIXTURES / "gsm8k_style.jsonl", FIXTURES / "countdown_style.jsonl"
    cases = [
        (TaskConfig(name=f"hf:{gsm}", prompt_field="query"),
         r"no column 'query' \(task.prompt_field\); its columns: question, answer"),
        (TaskConfig(name=f"hf:{gsm}", answer_field="final"),
         r"no column 'final' \(task.answer_field\); its columns: question, answer"),
        (TaskConfig(name=f"hf:{countdown}"),
         "none of the columns prompt, question, problem; set task.prompt_field to one of its columns: target, nums"),
        (TaskConfig(name=f"hf:{countdown}", prompt_field="Reach {goal} with {nums}."),
         "task.prompt_field names goal, not columns of the dataset; its columns: target, nums"),
        (TaskConfig(name=f"hf:{gsm}", train_split="validation"), r"no split 'validation'.*its splits: train"),
        (TaskConfig(name=f"hf:{FIXTURES / 'math500_style.jsonl'}", answer_format="gsm8k"),
         r"math500_style.jsonl:train\[0\]: column 'answer' has no '####' \(task.answer_format=gsm8k\)"),
    ]
    for cfg, message in cases:
        with pytest.raises(DatasetSourceError, match=message):
            load_task_config(cfg)


def test_countdown_rows_with_a_prompt_template_and_the_countdown_scorer():
    path = FIXTURES / "countdown_style.jsonl"
    task = load_task_config(TaskConfig(name=f"hf:{path}", prompt_field="Using the numbers {nums}, create an "
                                       "equation that equals {target}.", answer_field="target", scorer="countdown",
                                       eval_size=1))
    first = next(e for e in task.train + task.eval if e.id.endswith("train[0]"))
    assert first.question == "Using the numbers [44, 19, 35], create an equation that equals 28."
    assert first.answer == "28" and first.meta == {"nums": [44, 19, 35]}
    assert task.score("44 + 19 - 35", first) == 1.0
    assert task.score("28", first) == 0.0  # the target alone uses none of the numbers
    assert task.score("44 - 19 + 35", first) == 0.0  # the right numbers, the wrong value
    with pytest.raises(ValueError, match="task.params oops do not apply to scorer countdown; allowed: numbers_field"):
        load_task_config(TaskConfig(name=f"hf:{path}", prompt_field="{nums}", answer_field="target",
                                    scorer="countdown", params={"oops": 1}))


@pytest.mark.parametrize("value, fmt, gold", [
    ("She has 3 + 4 = <<3+4=7>>7.\n#### 1,234", "auto", "1234"),
    ("#### 3/4", "gsm8k", "3/4"),
    ("#### -5", "auto", "-5"),
    (r"so the answer is $\boxed{\frac{1}{2}}$.", "auto", r"\frac{1}{2}"),
    (r"\boxed{1} then \boxed{2}", "boxed", "2"),
    (" 42 ", "auto", "42"),
    (7, "plain", "7"),
    ("no marker here", "gsm8k", None),
    ("no box here", "boxed", None),
])
def test_gold_answer_formats(value, fmt, gold):
    assert gold_answer(value, fmt) == gold


def test_config_keys_of_hf_tasks_are_checked():
    with pytest.raises(ConfigError, match=r"config key 'task.prompt_field': applies to hf: tasks only"):
        load_config(GRPOConfig, None, ["task.prompt_field=question"])
    with pytest.raises(ConfigError, match=r"'task.answer_format' = 'latex'; allowed values: auto, plain, gsm8k, boxed"):
        load_config(GRPOConfig, None, ["task.name=hf:openai/gsm8k", "task.answer_format=latex"])
    with pytest.raises(ConfigError, match=r"config key 'task.eval_path': hf: tasks take held-out problems from "
                                          r"task.eval_split"):
        load_config(GRPOConfig, None, ["task.name=hf:openai/gsm8k", "task.eval_path=x.jsonl"])
    cfg = load_config(GRPOConfig, None, ["task.name=hf:openai/gsm8k", "task.subset=main", "task.eval_split=test"])
    assert (cfg.task.subset, cfg.task.train_split, cfg.task.eval_split) == ("main", "train", "test")
    with pytest.raises(ValueError, match="load them with load_task_config"):
        load_task("hf:openai/gsm8k")


def test_evaluation_of_a_whole_split(tmp_path, rows):
    """The evaluation job's task section (split all) evaluates every row of task.eval_split and loads no training
    set, so a benchmark with only a test split (MATH-500) is evaluated whole."""
    from r1lab.evals.config import EvalTaskConfig

    folder = tmp_path / "math500"
    folder.mkdir()
    (folder / "test.jsonl").write_text((FIXTURES / "math500_style.jsonl").read_text())
    task = load_task_config(EvalTaskConfig(name=f"hf:{folder}", eval_split="test"))
    assert task.train == [] and [e.answer for e in task.eval] == [r["answer"] for r in rows("math500_style.jsonl")]
