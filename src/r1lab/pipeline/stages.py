"""One small function per stage kind: build the job's config (defaults <- the stage's ``set`` <- wired artifacts),
then call the job in-process. Run folder of stage NAME: OUTPUT/stages/NAME; a model artifact is its final/, a
dataset artifact its data.jsonl (trace rows, docs/distillation.md)."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from r1lab.config import ConfigError, GRPOConfig, SFTConfig, TaskConfig
from r1lab.data.config import FilterConfig, GenerateConfig, JourneyConfig
from r1lab.config import option, require, to_dict
from r1lab.pipeline.config import PipelineConfig, Stage, job_config
from r1lab.train.rm_config import RMConfig


@dataclass
class MixConfig:
    """Concatenate datasets (e.g. R1's ~600K reasoning + ~200K general samples), optionally capped and shuffled."""

    inputs: dict = option({}, "source name -> JSONL file (wired by the pipeline from the stage's data)")
    output: str = option("data/mix.jsonl", "the mixed rows (overwritten)")
    caps: dict = option({}, "source name -> the most rows taken from it (its first rows; absent = all)")
    shuffle: bool = option(True, "shuffle the concatenated rows (seeded)")
    seed: int = option(0, "seed of the shuffle")

    def check(self) -> None:
        require(bool(self.inputs), "inputs", "needs at least one dataset")
        for name, cap in self.caps.items():
            require(name in self.inputs, "caps", f"{name!r} is not one of the inputs ({', '.join(self.inputs)})")
            require(isinstance(cap, int) and not isinstance(cap, bool) and cap >= 0, "caps",
                    f"{name}: must be an integer >= 0, got {cap!r}")


def run_mix(cfg: MixConfig) -> dict:
    """Write the mixed rows; each row's ``meta.mix_source`` names its source. Returns counts per source."""
    rows, counts = [], {}
    for name, path in cfg.inputs.items():
        with open(path, encoding="utf-8-sig") as f:  # skips a leading BOM, as pandas does
            own = [json.loads(line) for line in f if line.strip()]
        cap = cfg.caps.get(name)
        own = own if cap is None else own[:cap]
        counts[name] = len(own)
        rows += [{**r, "meta": {**(r.get("meta") or {}), "mix_source": name}} for r in own]
    if cfg.shuffle:
        random.Random(cfg.seed).shuffle(rows)
    out = Path(cfg.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    tmp.replace(out)
    return {"output": str(out), "rows": len(rows), "per_source": counts}


# --- config builders ---------------------------------------------------------------------------------------------
def _with_wiring(stage: Stage, wired: dict[str, Any], base: dict[str, Any] | None = None) -> dict[str, Any]:
    """Inherited sections first, then the stage's own ``set``, then the pipeline's wiring (which always wins)."""
    return {**(base or {}), **stage.set, **{k: str(v) if isinstance(v, Path) else v for k, v in wired.items()}}


def _generate(cfg: PipelineConfig, stage: Stage) -> dict:
    wired: dict[str, Any] = {"output.path": cfg.artifact(stage.name)}
    if stage.teacher is not None:
        wired["teacher.name"] = cfg.model_name(stage.teacher)
    return _with_wiring(stage, wired)


def _inherited_task(cfg: PipelineConfig, stage: Stage) -> dict:
    """A filter verifies rows against the task that generated them: it inherits the data stage's task section."""
    source = cfg.stage(stage.data[0])
    job = build_job_config(cfg, source)
    return {"task": to_dict(job.task)} if hasattr(job, "task") else {}


def _filter(cfg: PipelineConfig, stage: Stage) -> dict:
    out = cfg.artifact(stage.name)
    return _with_wiring(stage, {"input": cfg.artifact(stage.data[0]), "output": out,
                                "report": out.with_name("report.json")}, _inherited_task(cfg, stage))


def _journey(cfg: PipelineConfig, stage: Stage) -> dict:
    return _with_wiring(stage, {"input": cfg.artifact(stage.data[0]), "output": cfg.artifact(stage.name)})


def _mix(cfg: PipelineConfig, stage: Stage) -> dict:
    return _with_wiring(stage, {"inputs": {d: str(cfg.artifact(d)) for d in stage.data},
                                "output": cfg.artifact(stage.name)})


def _sft(cfg: PipelineConfig, stage: Stage) -> dict:
    return _with_wiring(stage, {"model.name": cfg.model_name(stage.model), "log.output_dir": cfg.run_dir(stage.name),
                                "data.train_path": cfg.artifact(stage.data[0])})


def _grpo(cfg: PipelineConfig, stage: Stage) -> dict:
    wired: dict[str, Any] = {"model.name": cfg.model_name(stage.model), "log.output_dir": cfg.run_dir(stage.name)}
    if stage.reward_model is not None:
        wired["rewards.params.reward_model.model"] = cfg.artifact(stage.reward_model)
    return _with_wiring(stage, wired)


def _rm(cfg: PipelineConfig, stage: Stage) -> dict:
    wired: dict[str, Any] = {"model.name": cfg.model_name(stage.model), "log.output_dir": cfg.run_dir(stage.name)}
    if stage.data:
        wired["data.path"] = cfg.artifact(stage.data[0])
    return _with_wiring(stage, wired)


def eval_defaults(cfg: PipelineConfig) -> dict[str, Any]:
    """The pipeline's evaluation: greedy, one sample per held-out problem, generations cached in the run folder.
    Held out even for a fixed benchmark (r1lab eval alone scores all of it): the stages may train on its other
    problems."""
    return {"task.split": "held_out", "task.eval_size": TaskConfig().eval_size, "sampling.n": 1,
            "sampling.temperature": 0.0, "metrics.ks": [1],
            "log.cache_dir": str(cfg.output_dir / "cache" / "generations"), **cfg.eval.set}


def _eval(cfg: PipelineConfig, stage: Stage) -> dict:
    return _with_wiring(stage, {"model.name": cfg.model_name(stage.model), "log.output_dir": cfg.run_dir(stage.name)},
                        eval_defaults(cfg))


def _eval_job_class():
    from r1lab.evals.config import EvalJobConfig

    return EvalJobConfig


BUILDERS: dict[str, tuple[Callable[[], type], Callable[[PipelineConfig, Stage], dict]]] = {
    "generate": (lambda: GenerateConfig, _generate), "filter": (lambda: FilterConfig, _filter),
    "journey": (lambda: JourneyConfig, _journey), "mix": (lambda: MixConfig, _mix), "sft": (lambda: SFTConfig, _sft),
    "grpo": (lambda: GRPOConfig, _grpo), "rm": (lambda: RMConfig, _rm), "eval": (_eval_job_class, _eval),
}


def build_job_config(cfg: PipelineConfig, stage: Stage) -> Any:
    """The job config this stage runs with; a bad key or value names the stage and the key."""
    cls, items = BUILDERS[stage.kind]
    return job_config(cls(), items(cfg, stage), f"stage '{stage.name}' ({stage.kind})")


def build_eval_config(cfg: PipelineConfig, label: str, model: str | Path) -> Any:
    """The pipeline's evaluation of ``model`` (after stage ``label``, or ``base``), into OUTPUT/evals/LABEL."""
    items = {**eval_defaults(cfg), "model.name": str(model), "log.output_dir": str(cfg.output_dir / "evals" / label)}
    return job_config(_eval_job_class(), items, "pipeline eval")


def time_limit_s(job: Any) -> float | None:
    """The stage's time limit in seconds where its config has one (training stages), else None."""
    minutes = getattr(getattr(job, "train", None), "time_limit_minutes", 0) or 0
    return minutes * 60 if minutes > 0 else None


# --- runners: call the job in-process ---------------------------------------------------------------------------
def run_job(stage: Stage, job: Any, resume: bool) -> dict:
    """Run one stage's job; returns a small JSON-able record of what it reported."""
    kind = stage.kind
    if kind == "generate":
        from r1lab.data.generate import run_generate

        summary = run_generate(job)
        return {"rows_in_file": summary["rows_in_file"], "rows_written": summary["rows_written"]}
    if kind == "filter":
        from r1lab.data.filters import run_filter

        report = run_filter(job)
        return {k: v for k, v in report.items() if isinstance(v, (int, float, str))}
    if kind == "journey":
        from r1lab.data.journey import run_journey

        report = run_journey(job)
        return {k: v for k, v in report.items() if isinstance(v, (int, float, str))}
    if kind == "mix":
        return run_mix(job)
    if kind == "sft":
        from r1lab.train.sft import train_sft

        return {"steps_done": train_sft(job, resume=resume).steps_done}
    if kind == "grpo":
        from r1lab.train.grpo import train_grpo

        return {"steps_done": train_grpo(job, resume=resume).steps_done}
    if kind == "rm":
        from r1lab.train.reward_model import train_reward_model

        return {"steps_done": train_reward_model(job, resume=resume).steps_done}
    if kind == "eval":
        return eval_record(run_eval_job(job))
    raise ConfigError(f"stage '{stage.name}': unknown kind {kind!r}")


def run_eval_job(job: Any) -> dict:
    from r1lab.evals.runner import run_eval

    return run_eval(job).results


def eval_record(results: dict) -> dict:
    """The few numbers the summary shows, from an ``r1lab eval`` results.json."""
    m = results.get("metrics", {})
    return {"accuracy": m.get("pass@1", m.get("accuracy")), "mean_length": m.get("mean_length"),
            "format_rate": m.get("format_rate"), "num_problems": results.get("num_problems")}
