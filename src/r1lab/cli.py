"""The ``r1lab`` command: one sub-command per job. Thin: parse, load config, call the job."""

from __future__ import annotations

import argparse
import sys

from r1lab.config import ConfigError, GRPOConfig, describe, load_config

CONFIG_EPILOG = "config keys (set in the YAML file or with --set KEY=VALUE):\n"


def _add_config_args(parser: argparse.ArgumentParser, with_file: bool) -> None:
    if with_file:
        parser.add_argument("config", help="YAML recipe; holds only what differs from the defaults listed below")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key, e.g. --set train.lr=1e-5 (repeatable; values parsed as YAML)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in log.output_dir from its latest checkpoint (exactly)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="r1lab",
        description="Build reasoning LLMs the DeepSeek-R1 way: GRPO with verifiable rewards (R1-Zero) and more.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    keys = CONFIG_EPILOG + "\n".join(describe(GRPOConfig))
    grpo = sub.add_parser(
        "grpo", help="train any causal LM with GRPO and rule-based rewards",
        description="GRPO (DeepSeekMath/R1) on a task with rule-based rewards. Writes a run folder with config.json, "
                    "metrics.jsonl, TensorBoard events, samples.jsonl, training.png, checkpoints/ and final/ (an HF "
                    "model folder).",
        epilog=keys, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_config_args(grpo, with_file=True)
    zero = sub.add_parser(
        "zero", help="run the default R1-Zero recipe (GRPO on the embedded SmolLM2-135M-Instruct, CPU-sized)",
        description="The default R1-Zero recipe: the defaults of `r1lab grpo`, on the embedded model. Prints the "
                    "held-out accuracy before and after training.",
        epilog=keys, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_config_args(zero, with_file=False)
    _add_eval_parsers(sub)
    return parser


def _add_eval_parsers(sub) -> None:
    from r1lab.evals.config import EvalJobConfig
    from r1lab.evals.help import EVAL_DESCRIPTION, eval_epilog

    ev = sub.add_parser("eval", help="evaluate a model: pass@k, maj@k, format, lengths, cost, reflection words; or "
                                     "an inference-time method (best-of-N, beam search, budget forcing, ...)",
                        description=EVAL_DESCRIPTION, epilog=eval_epilog(describe(EvalJobConfig)),
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ev.add_argument("model", nargs="?", help="model to evaluate (sets model.name)")
    ev.add_argument("--task", help="task to evaluate on (sets task.name): rg:NAME, humaneval, a .jsonl file, ...")
    ev.add_argument("--n", type=int, help="samples per problem (sets sampling.n)")
    ev.add_argument("--method", help="inference-time method (sets method.name; default: sample)")
    ev.add_argument("--sensitivity", action="store_true", help="also evaluate the built-in prompt variants "
                                                               "(sets sensitivity.builtin=true)")
    ev.add_argument("--config", help="YAML recipe; holds only what differs from the defaults listed below")
    ev.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override one config key, e.g. --set sampling.temperature=0 (repeatable; YAML values)")
    cmp = sub.add_parser("compare", help="side-by-side tables of two `r1lab eval` runs",
                         description="Print the settings and metrics of two evaluation runs side by side, with B - A.")
    cmp.add_argument("run_a", help="an `r1lab eval` run folder (or its results.json)")
    cmp.add_argument("run_b", help="another run folder")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command in ("grpo", "zero"):
            return _run_grpo(getattr(args, "config", None), args.overrides, args.resume)
        if args.command == "eval":
            return _run_eval(args)
        if args.command == "compare":
            return _run_compare(args.run_a, args.run_b)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    parser.error(f"unknown command {args.command}")
    return 2


def _run_grpo(config_path: str | None, overrides: list[str], resume: bool) -> int:
    from r1lab.train.grpo import AlreadyFinished, train_grpo  # lazy: keeps `r1lab --help` fast

    cfg = load_config(GRPOConfig, config_path, overrides)
    try:
        result = train_grpo(cfg, resume=resume)
    except (AlreadyFinished, FileExistsError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"run folder: {result.run_dir} (config, metrics, samples, training.png, final/)")
    if result.eval_before and result.eval_after:  # the last line, as `make demo` promises
        n = cfg.task.eval_size
        before, after = result.eval_before["eval/greedy_accuracy"], result.eval_after["eval/greedy_accuracy"]
        print(f"held-out accuracy: {before:.3f} -> {after:.3f} (n={n})")
    return 0


def _run_eval(args: argparse.Namespace) -> int:
    from r1lab.evals.config import EvalJobConfig
    from r1lab.evals.runner import run_eval  # lazy: keeps `r1lab --help` fast

    shortcuts = [(args.model, "model.name"), (args.task, "task.name"), (args.n, "sampling.n"),
                 (args.method, "method.name"), (True if args.sensitivity else None, "sensitivity.builtin")]
    given = [f"{key}={value}" for value, key in shortcuts if value is not None]
    cfg = load_config(EvalJobConfig, args.config, given + args.overrides)
    try:
        result = run_eval(cfg)
    except (FileNotFoundError, ValueError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    from r1lab.evals.help import summary_line

    print(f"run folder: {result.run_dir} (results.json, completions.jsonl, report.md, plots)")
    print(summary_line(result.results))
    return 0


def _run_compare(run_a: str, run_b: str) -> int:
    from r1lab.evals.report import compare_runs

    try:
        print(compare_runs(run_a, run_b))
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
