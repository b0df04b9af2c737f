"""The ``r1lab`` command: one sub-command per job. Thin: parse, load config, call the job."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from r1lab.config import AUTO_DTYPE_HELP, GENERATION_DTYPES, ConfigError, GRPOConfig, describe, load_config
from r1lab.models.embedded import EmbeddedModelMissing  # standard library only: `--help` stays fast

CONFIG_EPILOG = "config keys (set in the YAML file or with --set KEY=VALUE):\n"


def _add_config_args(parser: argparse.ArgumentParser, with_file: bool) -> None:
    if with_file:
        parser.add_argument("config", help="YAML recipe; holds only what differs from the defaults listed below")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key, e.g. --set train.lr=1e-5 (repeatable; values parsed as YAML)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in log.output_dir from its latest checkpoint (exactly)")


def _add_dry_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true",
                        help="print the planned memory (parameters, gradients, optimizer, reference, rollout copy, KV "
                             "cache, activations) against the device's free memory, and what would make it fit; "
                             "no weights are loaded and nothing is trained")


def _dry_run(cfg, job: str) -> int:
    from r1lab.train.memory_plan import format_plan, plan_job

    world = int(os.environ.get("WORLD_SIZE", "1"))
    shape, plan = plan_job(cfg, job, world_size=world)
    print(format_plan(shape, plan))
    return 0


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
    _add_dry_run(grpo)
    zero = sub.add_parser(
        "zero", help="run the default R1-Zero recipe (GRPO on the embedded SmolLM2-135M-Instruct, CPU-sized)",
        description="The default R1-Zero recipe: the defaults of `r1lab grpo`, on the embedded model: the R1-Zero "
                    "instruction, the assistant turn prefilled with <think>, accuracy on the <answer> block plus a "
                    "partial-credit format reward. Prints the held-out accuracy, format rate and lengths before and "
                    "after training, and two held-out completions before and after.",
        epilog=keys, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_config_args(zero, with_file=False)
    _add_dry_run(zero)
    _add_eval_parsers(sub)
    _add_sft_parser(sub)
    _add_data_parsers(sub)
    _add_rm_parser(sub)
    _add_prm_parser(sub)
    _add_pipeline_parser(sub)
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


def _add_sft_parser(sub) -> None:
    from r1lab.config import SFTConfig

    sft = sub.add_parser(
        "sft", help="supervised fine-tuning on traces (completion-only loss, packing), optionally with logit "
                    "distillation from a teacher",
        description="Chat SFT on JSONL traces (rows with 'prompt' + 'completion', as r1lab generate/filter write "
                    "them, or chat 'messages'). The prompt is rendered with the prompt section, the same as GRPO and "
                    "the evaluator; only completion tokens and their EOS are learned. Packing keeps examples apart "
                    "(restarting positions, block-diagonal attention). With distill.teacher set, the loss mixes "
                    "cross-entropy with T^2 x KL(teacher || student) at temperature T. The task section is used only "
                    "by eval.accuracy. Writes a run folder with config.json, data.json, metrics.jsonl, TensorBoard "
                    "events, samples.jsonl, training.png, checkpoints/ and final/ (an HF model folder).",
        epilog=CONFIG_EPILOG + "\n".join(describe(SFTConfig)), formatter_class=argparse.RawDescriptionHelpFormatter)
    sft.add_argument("config", nargs="?", help="YAML recipe; holds only what differs from the defaults listed below")
    sft.add_argument("--data", help="training traces JSONL (sets data.train_path)")
    _add_config_args(sft, with_file=False)
    _add_dry_run(sft)


# The jobs that run data-parallel under torchrun / srun (r1lab.parallel); the others (filter, journey, serve,
# pipeline, compare) refuse a multi-process launch, which would repeat the whole job on every rank.
DATA_PARALLEL_COMMANDS = ("grpo", "zero", "sft", "rm", "eval", "generate", "prm")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and args.command not in DATA_PARALLEL_COMMANDS:
        print(f"error: `r1lab {args.command}` runs in one process, and this launcher started {launched} (WORLD_SIZE);"
              f" each would repeat the whole job. Run it without torchrun/srun; data-parallel jobs: "
              f"{', '.join(DATA_PARALLEL_COMMANDS)}", file=sys.stderr)
        return 2
    try:
        cfg = load_job_config(args)
        if getattr(args, "dry_run", False):
            return _dry_run(cfg, "sft" if args.command == "sft" else "grpo")
        if args.command in ("grpo", "zero"):
            return _run_grpo(cfg, args.resume)
        if args.command == "sft":
            return _run_sft(cfg, args.resume)
        if args.command in DATA_COMMANDS:
            return _run_data(args, cfg)
        if args.command == "rm":
            return _run_rm(cfg, args.resume)
        if args.command == "pipeline":
            return _run_pipeline(args, cfg)
        if args.command == "prm":
            return _run_prm(cfg)
        if args.command == "eval":
            return _run_eval(cfg)
        if args.command == "compare":
            return _run_compare(args.run_a, args.run_b)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    except EmbeddedModelMissing as err:  # any job on the default model, also serve and pipeline, in one line
        print(f"error: {err}", file=sys.stderr)
        return 1
    parser.error(f"unknown command {args.command}")
    return 2


# Options that each set one config key: (argparse dest, config key)
SHORTCUTS = {
    "sft": [("data", "data.train_path")],
    "eval": [("model", "model.name"), ("task", "task.name"), ("n", "sampling.n"), ("method", "method.name"),
             ("sensitivity", "sensitivity.builtin")],
    "generate": [("teacher", "teacher.name"), ("url", "teacher.url"), ("task", "task.name"), ("k", "sampling.k"),
                 ("num_prompts", "output.num_prompts"), ("output", "output.path")],
    "filter": [("input", "input"), ("output", "output")],
    "journey": [("input", "input"), ("output", "output")],
}


def config_class(command: str) -> type | None:
    """The config class of a sub-command; None for those without one (serve, compare, and pipeline, whose file
    holds a config per stage)."""
    from r1lab.config import SFTConfig
    from r1lab.data.config import FilterConfig, GenerateConfig, JourneyConfig
    from r1lab.evals.config import EvalJobConfig
    from r1lab.infer.prm_job import PRMJobConfig
    from r1lab.train.rm_config import RMConfig

    return {"grpo": GRPOConfig, "zero": GRPOConfig, "sft": SFTConfig, "rm": RMConfig, "prm": PRMJobConfig,
            "eval": EvalJobConfig, "generate": GenerateConfig, "filter": FilterConfig,
            "journey": JourneyConfig}.get(command)


def load_job_config(args: argparse.Namespace) -> Any:
    """The validated config of a parsed command line (defaults <- YAML file <- options <- --set), the one ``main``
    runs the job with; None for serve and compare. Raises ConfigError. Loads no model and runs nothing, so a
    command line can be checked without running it (tests check every example of the help and README so)."""
    if args.command == "pipeline":
        from r1lab.pipeline import load_pipeline

        return load_pipeline(args.config, args.output_dir)
    cls = config_class(args.command)
    if cls is None:
        return None
    given = []
    for dest, key in SHORTCUTS.get(args.command, []):
        value = getattr(args, dest)
        if value is not None and value is not False:  # False: a store_true option left off
            given.append(f"{key}={value}")
    return load_config(cls, getattr(args, "config", None), given + args.overrides)


def _finish_ranks() -> bool:
    """End a training job's process group (under torchrun / srun); True on the rank that prints the summary."""
    from r1lab.parallel import close_distributed, is_main_process

    close_distributed()
    return is_main_process()


def _run_grpo(cfg: GRPOConfig, resume: bool) -> int:
    from r1lab.train.checkpoint import AlreadyFinished  # lazy: keeps `r1lab --help` fast
    from r1lab.train.grpo import train_grpo

    try:
        result = train_grpo(cfg, resume=resume)
    except (AlreadyFinished, FileExistsError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if not _finish_ranks():
        return 0
    print(f"run folder: {result.run_dir} (config, metrics, samples, training.png, final/)")
    if result.eval_before and result.eval_after:  # ends with the two lines `make demo` promises
        from r1lab.train.run_summary import summary_lines

        print("\n".join(summary_lines(result.run_dir, result.eval_before, result.eval_after, cfg.task.eval_size)))
    return 0


def _run_sft(cfg: Any, resume: bool) -> int:
    from r1lab.train.checkpoint import AlreadyFinished
    from r1lab.train.sft import train_sft  # lazy: keeps `r1lab --help` fast

    try:
        result = train_sft(cfg, resume=resume)
    except (AlreadyFinished, FileExistsError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if not _finish_ranks():
        return 0
    print(f"run folder: {result.run_dir} (config, data, metrics, samples, training.png, final/)")
    before, after = result.eval_before or {}, result.eval_after or {}
    for key, name in (("eval/loss", "held-out loss"), ("eval/greedy_accuracy", "held-out accuracy")):
        if key in before and key in after:
            print(f"{name}: {before[key]:.3f} -> {after[key]:.3f}")
    return 0


def _run_eval(cfg: Any) -> int:
    from r1lab.evals.runner import run_eval  # lazy: keeps `r1lab --help` fast

    try:
        result = run_eval(cfg)
    except (FileNotFoundError, ValueError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if not _finish_ranks():  # rank 0 prints the summary
        return 0
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


DATA_COMMANDS = ("generate", "filter", "journey", "serve")


def _add_data_parsers(sub) -> None:
    """Distillation data: generate -> filter -> journey; and serve, an OpenAI-compatible server."""
    from r1lab.data.config import FilterConfig, GenerateConfig, JourneyConfig

    def config_args(p: argparse.ArgumentParser, example: str) -> None:
        p.add_argument("config", nargs="?", help="YAML recipe; holds only what differs from the defaults listed below")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help=f"override one config key, e.g. --set {example} (repeatable; YAML values)")

    gen = sub.add_parser(
        "generate", help="sample k teacher traces per prompt (program solver, local model or OpenAI-compatible "
                         "endpoint) into a resumable JSONL file, with token usage and cost",
        description="Write k samples per prompt of a task from a teacher, in the trace row format (id, prompt, "
                    "completion, answer, sample, teacher, usage, finish_reason, meta). The teacher is a program "
                    "(teacher.name=program:arithmetic or program:countdown), a local model (HF folder, .gguf, "
                    "smollm2-135m), or, with teacher.url, any OpenAI-compatible server (r1lab serve, vLLM, SGLang, "
                    "llama.cpp, DeepSeek's API; the key is read from the variable named by teacher.api_key_env). "
                    "Output is appended and flushed row by row: re-running the same command skips the (id, sample) "
                    "pairs already written, so a killed run loses only the requests in flight. Cost per row uses "
                    "teacher.price_input/price_output (USD per million tokens; the seeds quote DeepSeek-R1 at "
                    "$0.55/$2.19 and o1 at $15/$60); totals go to OUTPUT.summary.json. An endpoint that stays "
                    "unreachable fails after teacher.max_retries with the URL and the error (exit 1), leaving the "
                    "finished rows in place.",
        epilog=CONFIG_EPILOG + "\n".join(describe(GenerateConfig)), formatter_class=argparse.RawDescriptionHelpFormatter)
    config_args(gen, "teacher.error_rate=0.3")
    gen.add_argument("--teacher", help="teacher (sets teacher.name): program:arithmetic, program:countdown, a model, "
                                       "or the endpoint's model name with --url")
    gen.add_argument("--url", help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1 (sets teacher.url)")
    gen.add_argument("--task", help="task to draw prompts from (sets task.name): rg:NAME, math:FILE, a .jsonl file")
    gen.add_argument("--k", type=int, help="samples per prompt (sets sampling.k)")
    gen.add_argument("--num-prompts", type=int, help="first N prompts of the split (sets output.num_prompts)")
    gen.add_argument("--output", help="output JSONL (sets output.path)")

    flt = sub.add_parser(
        "filter", help="rejection sampling: keep verified, readable, de-duplicated traces; report drops per reason",
        description="Filter r1lab generate output as the DeepSeek-R1 report's rejection sampling does: the verifier "
                    "(verify.verifier: the task's scorer, math-verify or answer match) sets `correct` and wrong rows "
                    "are dropped (verify.keep_wrong=true keeps them, labelled, for r1lab journey); readability "
                    "filters (truncated, think/answer format, language mixing, length bounds, repetition loops); "
                    "exact and near-duplicate removal; at most max_per_prompt rows per prompt. Each filter can be "
                    "switched off. Prints a table of rows dropped per reason and writes it to OUTPUT.report.json.",
        epilog=CONFIG_EPILOG + "\n".join(describe(FilterConfig)), formatter_class=argparse.RawDescriptionHelpFormatter)
    config_args(flt, "verify.keep_wrong=true")
    flt.add_argument("--input", help="trace JSONL to filter (sets input)")
    flt.add_argument("--output", help="kept rows JSONL (sets output)")

    jour = sub.add_parser(
        "journey", help="journey learning: wrong attempt + reflection + corrected path, mixed with right-only rows",
        description="Build journey-learning traces (O1 Replication Journey, arXiv 2410.18982) from rows labelled "
                    "with `correct` (r1lab filter --set verify.keep_wrong=true): for each prompt with a wrong and a "
                    "right attempt, the wrong attempt, a reflection phrase, then the right attempt. Mixed with "
                    "shortcut (right-only) rows at journey_fraction; meta.kind says which. Output is SFT input.",
        epilog=CONFIG_EPILOG + "\n".join(describe(JourneyConfig)), formatter_class=argparse.RawDescriptionHelpFormatter)
    config_args(jour, "journey_fraction=0.5")
    jour.add_argument("--input", help="labelled trace JSONL (sets input)")
    jour.add_argument("--output", help="journey + shortcut JSONL (sets output)")

    srv = sub.add_parser(
        "serve", help="serve a model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions)",
        description="An OpenAI-compatible server on r1lab's rollout engine, the decode loop training generates "
                    "with (each prompt prefilled once for its n samples; Llama-family models on a static cache and "
                    "r1lab's C kernels): GET /v1/models, POST /v1/chat/completions (chat template applied) and "
                    "/v1/completions, with usage counts and finish_reason, and stream=true as server-sent events "
                    "(sent once a request's generation is done; stream_options.include_usage adds a usage chunk). "
                    "Standard library HTTP server, one generation at a time; for throughput use vLLM or SGLang, "
                    "which speak the same API. A teacher: `r1lab generate --url http://HOST:PORT/v1 --teacher NAME` "
                    "(NAME: the --served-name).")
    srv.add_argument("model", help="HF folder, .gguf file, hub id in the local cache, or smollm2-135m")
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, local only)")
    srv.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    srv.add_argument("--dtype", default="float32", choices=GENERATION_DTYPES,
                     help=f"dtype the model generates in (default float32; {AUTO_DTYPE_HELP})")
    srv.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default auto)")
    srv.add_argument("--batch-size", type=int, default=16, help="sequences generated at once for n > 1 (default 16)")
    srv.add_argument("--served-name", help="model name reported by /v1/models and in responses (default: MODEL)")
    srv.add_argument("--quiet", action="store_true", help="do not log each request")


def _run_data(args: argparse.Namespace, cfg: Any) -> int:
    if args.command == "serve":
        from r1lab.rollout.server import run_server

        run_server(args.model, args.host, args.port, args.dtype, args.device, args.batch_size, args.served_name,
                   verbose=not args.quiet)
        return 0
    try:
        if args.command == "generate":
            from r1lab.data.generate import format_summary, run_generate, summary_path

            summary = run_generate(cfg)
            if not _finish_ranks():  # rank 0 prints the summary
                return 0
            print(format_summary(summary))
            print(f"summary: {summary_path(cfg.output.path)}")
        elif args.command == "filter":
            from r1lab.data.filters import format_report, run_filter

            report = run_filter(cfg)
            print(format_report(report))
            print(f"kept rows: {report['output']}; report: {report['report_path']}")
        else:
            from r1lab.data.journey import run_journey

            report = run_journey(cfg)
            print(f"{report['journey_rows']} journey + {report['shortcut_rows']} shortcut rows -> {report['output']} "
                  f"({report['journeys_available']} journeys from {report['prompts_with_wrong_and_right']} prompts "
                  f"with wrong and right attempts; {report['shortcuts_available']} right rows)")
    except (FileNotFoundError, ValueError, RuntimeError, KeyboardInterrupt) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0



def _add_rm_parser(sub) -> None:
    from r1lab.train.rm_config import RMConfig

    rm = sub.add_parser(
        "rm", help="train a reward model on preference pairs (Bradley-Terry), for the reward_model reward of GRPO",
        description="A reward model for prompts no rule can check (helpfulness, harmlessness), as in the last RL "
                    "stage of DeepSeek-R1: a causal LM's backbone with a fresh one-output head on the last token, "
                    "trained with the Bradley-Terry loss -log sigmoid(r_chosen - r_rejected - margin) on JSONL rows "
                    "{prompt, chosen, rejected} (data.path=builtin: the 200 pairs shipped with r1lab). Each pair is "
                    "rendered with the chat template (prompt = user turn, response = assistant turn), exactly as the "
                    "reward renders it. A seeded share of the prompts is held out (no prompt on both sides) and "
                    "pairwise accuracy on it is measured before, during and after training, overall and per "
                    "category. Writes a run folder with config.json, metrics.jsonl, TensorBoard events, eval/ "
                    "(per-pair held-out scores), training.png, results.json, checkpoints/ and final/ (an HF "
                    "sequence-classification folder). Use it in GRPO with rewards.weights={reward_model: 1.0} and "
                    "rewards.params={reward_model: {model: RUN/final}}.",
        epilog=CONFIG_EPILOG + "\n".join(describe(RMConfig)), formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_config_args(rm, with_file=True)


def _run_rm(cfg: Any, resume: bool) -> int:
    from r1lab.train.checkpoint import AlreadyFinished
    from r1lab.train.reward_model import train_reward_model  # lazy: keeps `r1lab --help` fast

    try:
        result = train_reward_model(cfg, resume=resume)
    except (AlreadyFinished, FileExistsError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if not _finish_ranks():
        return 0
    print(f"run folder: {result.run_dir} (config, metrics, eval/, training.png, results.json, final/)")
    print(f"use in GRPO: rewards.weights={{reward_model: 1.0}} rewards.params={{reward_model: "
          f"{{model: '{result.final_model_dir}'}}}}")
    if result.eval_before and result.eval_after:
        before, after = result.eval_before["eval/accuracy"], result.eval_after["eval/accuracy"]
        print(f"held-out pairwise accuracy: {before:.3f} -> {after:.3f}")
    return 0


def _add_prm_parser(sub) -> None:
    from r1lab.infer.prm_job import PRMJobConfig

    prm = sub.add_parser(
        "prm", help="train a process reward model from Monte-Carlo step labels (Math-Shepherd)",
        description="Sample solutions from the policy, label each step by rolling out continuations from it (a step "
                    "is good when they reach the right answer), fit a one-logit head on the policy's backbone, and "
                    "measure step agreement on held-out problems. Writes config.json, labels.jsonl, "
                    "heldout_labels.jsonl, metrics.jsonl, prm_training.png, summary.json and final/ (use it with "
                    "`r1lab eval --method beam_search --set 'method.params={prm: {kind: trained, model: "
                    "RUN/final}}'`).",
        epilog=CONFIG_EPILOG + "\n".join(describe(PRMJobConfig)), formatter_class=argparse.RawDescriptionHelpFormatter)
    prm.add_argument("config", nargs="?", help="YAML recipe; holds only what differs from the defaults listed below")
    prm.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override one config key, e.g. --set mc.rollouts=8 (repeatable; values parsed as YAML)")


def _run_prm(cfg: Any) -> int:
    from r1lab.infer.prm_job import run_prm_job

    try:
        summary = run_prm_job(cfg)
    except (FileExistsError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if not _finish_ranks():  # rank 0 prints the summary
        return 0
    print(f"run folder: {cfg.log.output_dir} (labels, metrics, prm_training.png, summary.json, final/)")
    agreement = summary.get("heldout/step_accuracy")
    shown = f"{agreement:.3f}" if agreement is not None else "n/a (no held-out problems)"
    print(f"PRM: {summary['train_solutions']} labelled solutions; held-out step agreement {shown}")
    return 0


def _add_pipeline_parser(sub) -> None:
    from r1lab.pipeline.help import DESCRIPTION, EPILOG

    pl = sub.add_parser("pipeline", help="run a multi-stage recipe (the R1 pipeline: SFT, RL, rejection sampling, "
                                         "SFT, RL for all scenarios) as one resumable job",
                        description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    pl.add_argument("config", help="pipeline YAML (format below), e.g. configs/r1_cpu.yaml")
    pl.add_argument("--resume", action="store_true", help="continue the run in output_dir: finished stages are "
                                                          "skipped, an interrupted one continues")
    pl.add_argument("--rerun", action="append", default=[], metavar="STAGE",
                    help="run STAGE again, and every later stage that uses its outputs (repeatable; implies --resume)")
    pl.add_argument("--output-dir", help="override the file's output_dir")


def _run_pipeline(args: argparse.Namespace, cfg: Any) -> int:
    from r1lab.pipeline import PipelineError, run_pipeline

    try:
        run_pipeline(cfg, resume=args.resume, rerun=args.rerun)
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
