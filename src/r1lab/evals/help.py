"""Help text of ``r1lab eval``: what it measures, the inference-time methods, and a one-line summary of a run."""

from __future__ import annotations

EVAL_DESCRIPTION = (
    "Evaluate a model on a task's problems with n samples per problem (defaults: the R1 report's temperature 0.6, "
    "top-p 0.95): every problem of a fixed benchmark (HumanEval, a file), the held-out set of a generated task "
    "(rg:, mix), or with task.split=held_out the problems a training run on that task held out. Writes a run "
    "folder with results.json, completions.jsonl, report.md, pass_at_k.png and lengths.png. Generations are "
    "cached (model, prompt, sampling, n, seed), so re-running with another k or metric does not regenerate. With "
    "--method, an inference-time scaling method answers each problem instead and is scored by accuracy and tokens."
)

METRICS = (
    ("pass@1", "share of correct samples, averaged over problems"),
    ("pass@k", "unbiased estimator of P(one of k samples correct) (Chen et al. 2021)"),
    ("maj@k", "majority vote of k samples over answers the task's verifier considers equal (maj@n = cons@n); "
              "ties go to the answer voted for first"),
    ("format_rate", "responses in the R1 format <think>..</think><answer>..</answer>"),
    ("extract_rate", "responses with an extractable answer"),
    ("mean_length, mean_length_correct, mean_length_wrong", "response length in tokens"),
    ("tokens_per_correct", "generated tokens per correct answer"),
    ("cost_per_1k", "$ to answer 1,000 questions once (metrics.price_input / price_output per million tokens)"),
    ("reflection_rate, reflection_share, reflection_words", "'wait', 'let me check', ... per response"),
    ("prompt_sensitivity", "min/max/range/std of pass@1 over prompt variants (--sensitivity)"),
)


def methods_help() -> list[str]:
    from r1lab.infer import METHODS

    lines = ["  sample\n      n independent samples per problem and every metric above (the default)"]
    for name in METHODS.names():
        fn = METHODS.get(name)
        doc = (fn.__doc__ or "").strip().split("\n")[0]
        params = ", ".join(f"{k}={v!r}" for k, v in getattr(fn, "param_defaults", {}).items())
        lines.append(f"  {name}\n      {doc}\n      params: {params}")
    return lines


def eval_epilog(config_lines: list[str]) -> str:
    metrics = [f"  {name}\n      {text}" for name, text in METRICS]
    return "\n".join(["metrics (results.json):", *metrics, "", "methods (--method, method.name):", *methods_help(),
                      "", "config keys (set in the YAML file or with --set KEY=VALUE):", *config_lines])


def summary_line(results: dict) -> str:
    m = results["metrics"]
    if "method" in results:
        return (f"{results['method']}: accuracy {m['accuracy']:.3f} on {results['num_problems']} problems, "
                f"{m['mean_tokens']:.1f} generated tokens per problem")
    n = results["sampling"]["n"]
    text = f"pass@1 {m['pass@1']:.3f}"
    if n > 1:
        text += f", pass@{n} {m[f'pass@{n}']:.3f}, maj@{n} {m[f'maj@{n}']:.3f}"
    length = m["mean_length"]
    text += f" on {results['num_problems']} problems (n={n}); mean length {length:.1f} tokens"
    if "prompt_sensitivity" in results:
        spread = results["prompt_sensitivity"]["pass@1"]
        text += f"; pass@1 over prompt variants {spread['min']:.3f}..{spread['max']:.3f}"
    return text
