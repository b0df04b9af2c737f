"""Run a pipeline's stages in order, resumably, recording lineage and evaluating every model it makes.

OUTPUT/pipeline_state.json records each stage once its outputs are complete; a finished stage is skipped on the
next run (``--rerun NAME`` runs NAME and every stage that depends on it again). A stage that was killed runs again
from where it was: generate appends to its file and skips finished rows, a training stage (sft, grpo, rm) resumes
from its own last checkpoint, an evaluation reuses its cached generations. OUTPUT/lineage.json records each
stage's inputs (paths and content fingerprints), outputs, resolved config and timings.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from r1lab.config import to_dict
from r1lab.pipeline import stages as stage_jobs
from r1lab.pipeline.config import PRODUCES, PipelineConfig, Stage
from r1lab.pipeline.report import write_summary

TRAINING = ("sft", "grpo", "rm")
EVALUATED = ("sft", "grpo")  # policy models: the same held-out evaluation follows each


class PipelineError(RuntimeError):
    """A stage failed or the run folder disagrees with the config; the message says what to do."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def fmt_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def model_record(name: str | Path) -> dict[str, Any]:
    """A model folder's path and content fingerprint (r1lab.evals.generations.model_fingerprint)."""
    from r1lab.evals.generations import files_digest, model_fingerprint
    from r1lab.models.loading import resolve_model_folder

    try:
        folder = resolve_model_folder(str(name))
        return {"path": str(name), "folder": str(folder), "fingerprint": model_fingerprint(folder),
                "files": files_digest(folder)}
    except (OSError, ValueError) as err:  # e.g. a program teacher or an endpoint: no folder to fingerprint
        return {"path": str(name), "fingerprint": None, "note": str(err)}


def data_record(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        rows = sum(1 for line in f if line.strip())
    return {"path": str(path), "sha256": sha256_file(path), "rows": rows}


def final_complete(folder: Path) -> bool:
    """A training stage's final/ holds a whole model (written last by the job)."""
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors")) and \
        (folder / "tokenizer_config.json").is_file()


class State:
    """OUTPUT/pipeline_state.json: per stage, its record once complete (and the evaluations)."""

    def __init__(self, path: Path):
        self.path = path
        self.data: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {"stages": {}, "evals": {}}

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=2))
        tmp.replace(self.path)  # atomic: a kill never leaves half a state file

    def done(self, name: str) -> dict | None:
        entry = self.data["stages"].get(name)
        return entry if entry and entry.get("status") == "done" else None


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [k for key in sorted(set(a) | set(b)) for k in _diff(a.get(key), b.get(key), f"{prefix}{key}.")]
    return [] if a == b else [prefix.rstrip(".")]


def _stale_inputs(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What differs between a finished stage's recorded inputs and the same inputs now: a dataset whose sha256
    changed, or a model folder whose files changed (records written before "files" existed are not compared)."""
    stale = []
    for role in sorted(set(recorded) | set(current)):
        before, now = recorded.get(role), current.get(role)
        if role == "data":
            old_rows = {r.get("stage") or r["path"]: r for r in before or []}
            for row in now or []:
                was = old_rows.get(row.get("stage") or row["path"])
                if was is not None and was.get("sha256") != row["sha256"]:
                    stale.append(f"data {row['path']}: sha256 {str(was.get('sha256'))[:12]} -> {row['sha256'][:12]}")
            continue
        if not isinstance(before, dict) or not isinstance(now, dict):
            continue
        if before.get("files") and now.get("files") and before["files"] != now["files"]:
            stale.append(f"{role} {now.get('folder', now.get('path'))} rewritten")
    return stale


class PipelineRunner:
    def __init__(self, cfg: PipelineConfig, progress: bool = True):
        self.cfg = cfg
        self.out = cfg.output_dir
        self.state = State(self.out / "pipeline_state.json")
        self.progress = progress
        self.started = time.monotonic()

    # --- bookkeeping ------------------------------------------------------------------------------------------
    def say(self, text: str) -> None:
        if self.progress:
            print(f"[pipeline {fmt_duration(time.monotonic() - self.started)}] {text}", flush=True)

    def eta(self, index: int) -> str:
        """Time left from the stage time limits of stage ``index`` onward (evaluations not counted)."""
        limits = [stage_jobs.time_limit_s(stage_jobs.build_job_config(self.cfg, s)) for s in self.cfg.stages[index:]
                  if not self.state.done(s.name)]
        known = sum(x for x in limits if x)
        unknown = sum(x is None for x in limits)
        if not known:
            return "ETA unknown (no stage time limits)" if unknown else "ETA 0s"
        text = f"ETA ~{fmt_duration(known)} from time limits"
        return text + (f" + {unknown} stage(s) without one" if unknown else "")

    def invalidate(self, names: list[str]) -> None:
        """Forget stages (and their evaluations) and delete their run folders, so they run from scratch."""
        for name in names:
            self.state.data["stages"].pop(name, None)
            self.state.data["evals"].pop(name, None)
            for folder in (self.cfg.run_dir(name), self.out / "evals" / name):
                if folder.exists():
                    shutil.rmtree(folder)
        self.state.save()
        self.write_lineage()

    def inputs_of(self, stage: Stage, job: Any) -> dict[str, Any]:
        cfg, inputs = self.cfg, {}
        if stage.model is not None or stage.kind in ("sft", "grpo", "rm", "eval"):
            inputs["model"] = {"stage": stage.model or "base", **model_record(cfg.model_name(stage.model))}
        if stage.kind == "generate":
            name = job.teacher.name
            inputs["teacher"] = {"stage": stage.teacher, **(model_record(name) if not name.startswith("program:")
                                                             and not job.teacher.url else {"path": name})}
        if stage.reward_model is not None:
            inputs["reward_model"] = {"stage": stage.reward_model, **model_record(cfg.artifact(stage.reward_model))}
        if stage.data:
            inputs["data"] = [{"stage": d, **data_record(cfg.artifact(d))} for d in stage.data]
        elif stage.kind == "rm":  # the preference pairs of data.path (builtin = the shipped set)
            from r1lab.data.preferences import BUILTIN, builtin_path

            path = builtin_path("preferences.jsonl") if job.data.path == BUILTIN else Path(job.data.path)
            inputs["data"] = [{"stage": None, **data_record(path)}]
        return inputs

    def outputs_of(self, stage: Stage) -> dict[str, Any]:
        path = self.cfg.artifact(stage.name)
        produces = PRODUCES[stage.kind]
        if produces == "data":
            return {"data": data_record(path)}
        if produces == "eval":
            return {"results": str(path)}
        return {"model": model_record(path)}

    def write_lineage(self) -> None:
        stages = {}
        for s in self.cfg.stages:
            entry = self.state.data["stages"].get(s.name)
            if entry:
                stages[s.name] = {k: v for k, v in entry.items() if k != "status"} | {"status": entry["status"]}
                if s.name in self.state.data["evals"]:
                    stages[s.name]["eval"] = self.state.data["evals"][s.name]
        lineage = {"pipeline": self.cfg.source, "output_dir": str(self.out), "base_model": self.cfg.base_model,
                   "base_eval": self.state.data["evals"].get("base"), "stages": stages}
        (self.out / "lineage.json").write_text(json.dumps(lineage, indent=2))

    # --- running --------------------------------------------------------------------------------------------------
    def run(self, rerun: list[str] | None = None) -> dict:
        names = [s.name for s in self.cfg.stages]
        for name in rerun or []:
            if name not in names:
                raise PipelineError(f"--rerun {name}: no such stage; stages: {', '.join(names)}")
        self.out.mkdir(parents=True, exist_ok=True)
        for name in rerun or []:
            again = [name, *self.cfg.dependants(name)]
            self.say(f"--rerun {name}: forgetting {', '.join(again)}")
            self.invalidate(again)
        if self.cfg.eval.enabled and self.cfg.eval.base:
            self.evaluate("base", self.cfg.base_model)
        total = len(self.cfg.stages)
        for i, stage in enumerate(self.cfg.stages):
            job = stage_jobs.build_job_config(self.cfg, stage)
            if self.state.done(stage.name):
                self.check_unchanged(stage, job)
                self.say(f"stage {i + 1}/{total} {stage.name} ({stage.kind}): done earlier, skipped")
            else:
                self.run_stage(i, stage, job)
            if stage.kind in EVALUATED and self.cfg.eval.enabled:
                self.evaluate(stage.name, self.cfg.artifact(stage.name))
        summary = write_summary(self.cfg, self.state.data)
        self.say(f"finished; summary in {self.out / 'summary.md'}")
        return summary

    def check_unchanged(self, stage: Stage, job: Any) -> None:
        entry = self.state.done(stage.name)
        changed = _diff(entry["config"], json.loads(json.dumps(to_dict(job))))
        if changed:
            raise PipelineError(
                f"stage '{stage.name}' finished earlier with a different config ({', '.join(changed[:6])} changed); "
                f"pass --rerun {stage.name} to run it (and the stages after it that use it) again, or restore the "
                f"config")
        missing = self.cfg.artifact(stage.name)
        if not missing.exists():
            raise PipelineError(f"stage '{stage.name}' is recorded as done but its output {missing} is missing; "
                                f"pass --rerun {stage.name}")
        stale = _stale_inputs(entry.get("inputs", {}), self.inputs_of(stage, job))
        if stale:
            raise PipelineError(
                f"stage '{stage.name}' finished earlier from inputs that have changed since ({'; '.join(stale)}); "
                f"its outputs no longer follow from them: pass --rerun {stage.name} to run it (and the stages after "
                f"it that use it) again, or restore the inputs")

    def run_stage(self, index: int, stage: Stage, job: Any) -> None:
        total, run_dir = len(self.cfg.stages), self.cfg.run_dir(stage.name)
        resume = False
        if stage.kind in TRAINING:
            resume = self.prepare_training(stage, run_dir)
        previous = self.state.data["stages"].get(stage.name) or {}
        attempts = previous.get("attempts", 0) + 1
        first_start = previous.get("started") or _now()
        self.state.data["stages"][stage.name] = {"status": "running", "kind": stage.kind, "started": first_start,
                                                 "attempts": attempts}
        self.state.save()
        how = " (resuming from its last checkpoint)" if resume else " (resuming)" if attempts > 1 else ""
        self.say(f"stage {index + 1}/{total} {stage.name} ({stage.kind}) started{how}; {self.eta(index)}")
        inputs = self.inputs_of(stage, job)
        # The config as asked for: a job resolves `auto` values in place (its run folder's config.json records what
        # they became), and a later run compares its own, unresolved, config with this one
        requested = json.loads(json.dumps(to_dict(job)))
        t0 = time.monotonic()
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            if stage.kind in TRAINING and final_complete(run_dir / "final"):
                record = {"note": "final model already written before an interruption; job not called again"}
            else:
                record = stage_jobs.run_job(stage, job, resume)
        except Exception as err:  # noqa: BLE001 - recorded, then re-raised with what to do next
            self.state.data["stages"][stage.name]["status"] = "failed"
            self.state.data["stages"][stage.name]["error"] = f"{type(err).__name__}: {err}"
            self.state.save()
            self.write_lineage()
            raise PipelineError(f"stage '{stage.name}' ({stage.kind}) failed after "
                                f"{fmt_duration(time.monotonic() - t0)}: {type(err).__name__}: {err}. Fix the cause "
                                f"and run again with --resume: it continues at this stage") from err
        seconds = time.monotonic() - t0
        self.state.data["stages"][stage.name] = {
            "status": "done", "kind": stage.kind, "inputs": inputs, "outputs": self.outputs_of(stage),
            "config": requested, "result": record, "started": first_start,
            "finished": _now(), "duration_s": round(seconds, 3), "attempts": attempts, "resumed": resume,
            "time_limit_s": stage_jobs.time_limit_s(job),
        }
        if stage.kind == "eval":
            self.state.data["evals"][stage.name] = {**record, "model": str(job.model.name),
                                                    "results": str(self.cfg.artifact(stage.name))}
        self.state.save()
        self.write_lineage()
        if stage.kind in TRAINING and not self.cfg.keep_checkpoints and (run_dir / "checkpoints").exists():
            shutil.rmtree(run_dir / "checkpoints")  # recorded as done: only final/ is read from here on
        self.say(f"stage {index + 1}/{total} {stage.name} ({stage.kind}) finished in {fmt_duration(seconds)}")

    def prepare_training(self, stage: Stage, run_dir: Path) -> bool:
        """True when the job should resume from a checkpoint in its run folder; a folder with nothing to resume
        from (killed before its first checkpoint) is cleared so the job starts clean."""
        from r1lab.train.checkpoint import list_checkpoints

        if final_complete(run_dir / "final"):
            return False
        if list_checkpoints(run_dir / "checkpoints"):
            return True
        if run_dir.exists():
            shutil.rmtree(run_dir)
        return False

    def evaluate(self, label: str, model: str | Path) -> None:
        """The pipeline's held-out evaluation of ``model``, recorded in the state; run again only when the eval
        section changed (every row of the summary must come from the same evaluation)."""
        job = stage_jobs.build_eval_config(self.cfg, label, model)
        setting = {k: v for k, v in json.loads(json.dumps(to_dict(job))).items() if k != "log"}
        setting["model"].pop("name")
        if self.state.data["evals"].get(label, {}).get("setting") == setting:
            return
        self.say(f"evaluating {label} on {job.task.name} ({job.task.eval_size} held-out problems)")
        t0 = time.monotonic()
        try:
            record = stage_jobs.eval_record(stage_jobs.run_eval_job(job))
        except Exception as err:  # noqa: BLE001 - re-raised with what to do next
            raise PipelineError(f"evaluation of {label} ({model}) failed: {type(err).__name__}: {err}. Fix the "
                                f"cause (the pipeline's eval section) and run again with --resume") from err
        record.update({"model": str(model), "results": str(Path(job.log.output_dir) / "results.json"),
                       "duration_s": round(time.monotonic() - t0, 3), "setting": setting})
        self.state.data["evals"][label] = record
        self.state.save()
        self.write_lineage()
        acc = record["accuracy"]
        self.say(f"eval {label}: held-out accuracy {acc:.3f}, mean length {record['mean_length']:.1f} tokens "
                 f"({fmt_duration(record['duration_s'])})" if acc is not None else f"eval {label}: no accuracy")


def run_pipeline(cfg: PipelineConfig, resume: bool = False, rerun: list[str] | None = None,
                 progress: bool = True) -> dict:
    """Run (or continue, with ``resume``/``rerun``) the pipeline; returns the summary."""
    state = cfg.output_dir / "pipeline_state.json"
    if state.is_file() and not (resume or rerun):
        raise PipelineError(f"{cfg.output_dir} already holds a pipeline run; pass --resume to continue it (finished "
                            f"stages are skipped), --rerun STAGE to redo a stage, or choose another output_dir")
    return PipelineRunner(cfg, progress=progress).run(rerun)
