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
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command in ("grpo", "zero"):
            return _run_grpo(getattr(args, "config", None), args.overrides, args.resume)
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


if __name__ == "__main__":
    sys.exit(main())
