"""`r1lab eval` and `r1lab compare` end to end through `r1lab.cli.main`: a tiny model generating for real, the run
folder, the side-by-side table; `--help` in a fresh process (it must not need torch)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

ARITH = ["task.params={min_terms: 2, max_terms: 2, min_digits: 1, max_digits: 1, operators: ['+'], "
         "allow_parentheses: false, allow_negation: false}", "task.train_size=50", "task.eval_size=3",
         "sampling.max_new_tokens=6", "log.progress=false"]


def r1lab(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "r1lab.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def sets(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def test_eval_help_lists_metrics_methods_and_keys():
    proc = r1lab("eval", "--help")
    assert proc.returncode == 0
    for word in ("pass@k", "maj@k", "format_rate", "tokens_per_correct", "cost_per_1k", "reflection_rate",
                 "best_of_n", "self_consistency", "budget_forcing", "beam_search", "dvts", "weighted_vote", "cot",
                 "sampling.temperature", "metrics.ks", "sensitivity.builtin", "method.params", "log.cache_dir"):
        assert word in proc.stdout, word
    assert "compare" in r1lab("--help").stdout
    # building the parser (metrics, methods, keys) imports neither torch nor transformers: `r1lab --help` stays fast
    light = subprocess.run([sys.executable, "-c", "import sys, r1lab.cli as c; c.build_parser(); "
                            "print('torch' in sys.modules, 'transformers' in sys.modules)"],
                           capture_output=True, text=True, timeout=60)
    assert light.stdout.split() == ["False", "False"], light.stderr


def test_eval_then_compare(tiny_model_dir, tmp_path, monkeypatch, capsys):
    from r1lab.cli import main

    monkeypatch.setenv("R1LAB_CACHE", str(tmp_path / "cache"))
    a, b = tmp_path / "a", tmp_path / "b"
    code = main(["eval", str(tiny_model_dir), "--task", "rg:basic_arithmetic", "--n", "2",
                 *sets(ARITH + [f"log.output_dir={a}"])])
    out = capsys.readouterr().out
    assert code == 0 and "pass@1" in out and "run folder" in out
    results = json.loads((a / "results.json").read_text())
    for key in ("pass@1", "pass@2", "maj@1", "maj@2", "format_rate", "mean_length", "mean_length_correct",
                "mean_length_wrong", "tokens_per_correct", "cost_per_1k", "reflection_rate"):
        assert key in results["metrics"], key
    assert results["sampling"] == {"n": 2, "temperature": 0.6, "top_p": 0.95, "top_k": 0, "max_new_tokens": 6,
                                   "seed": 0, "ks": [1, 2], "dtype": "float32", "decoding": "sampling"}
    assert results["generated_prompts"] == 3
    assert results["cache_file"].startswith(str(tmp_path / "cache" / "generations"))
    lines = (a / "completions.jsonl").read_text().splitlines()
    assert len(lines) == 6 and all(json.loads(line)["length"] <= 6 for line in lines)
    assert (a / "report.md").is_file() and (a / "pass_at_k.png").is_file()
    # compare: B is A with pass@1 raised by 0.25
    b.mkdir()
    moved = {**results, "metrics": {**results["metrics"], "pass@1": results["metrics"]["pass@1"] + 0.25}}
    (b / "results.json").write_text(json.dumps(moved))
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "| metric | A | B | B - A |" in out
    assert any(line.startswith("| pass@1 |") and line.endswith("| +0.250 |") for line in out)
    assert any(line.startswith("| pass@2 |") and line.endswith("| +0.000 |") for line in out)
    assert main(["compare", str(a), str(tmp_path / "nothing")]) == 1
    assert "no results.json" in capsys.readouterr().err


def test_eval_config_typo_names_the_key(capsys):
    from r1lab.cli import main

    assert main(["eval", "x", "--set", "sampling.temprature=0.5"]) == 2
    assert "Did you mean 'sampling.temperature'?" in capsys.readouterr().err
    assert main(["eval", "x", "--method", "beam_serch"]) == 2
    assert "unknown method 'beam_serch'" in capsys.readouterr().err
