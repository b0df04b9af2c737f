"""The pipeline YAML: an ordered list of stages, each a job of r1lab wired to earlier stages' artifacts.

```yaml
output_dir: runs/r1            # every stage writes OUTPUT/stages/NAME; state, lineage and summary sit in OUTPUT
base_model: smollm2-135m       # what `model: base` / `teacher: base` mean
eval:                          # run after every model-producing stage (sft, grpo) and on the base model
  enabled: true
  base: true
  set: {task.eval_size: 100}   # keys of `r1lab eval` (greedy n=1 on the task's held-out set by default)
stages:
  - name: traces
    kind: generate
    set: {teacher.name: program:arithmetic, sampling.k: 2}
  - name: clean
    kind: filter
    data: traces               # input by reference; the filter also inherits generate's task section
  - name: cold_start
    kind: sft
    model: base
    data: clean
```

Every stage's job config is built at load time (defaults <- the stage's ``set`` <- the wired paths) with
``r1lab.config.load_config``, so a typo fails before anything runs, with the stage and key in the message.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from r1lab.config import ConfigError, load_config

# kind -> what it produces: a model folder (final/), a dataset (data.jsonl) or an evaluation (results.json)
PRODUCES = {"generate": "data", "filter": "data", "journey": "data", "mix": "data", "sft": "model", "grpo": "model",
            "rm": "reward_model", "eval": "eval"}
KINDS = tuple(PRODUCES)
# which inputs each kind takes; `data` of mix is a list, of the others a single stage
INPUTS = {"generate": ("teacher",), "filter": ("data",), "journey": ("data",), "mix": ("data",),
          "sft": ("model", "data"), "grpo": ("model", "reward_model"), "rm": ("model", "data"), "eval": ("model",)}
STAGE_KEYS = ("name", "kind", "set", "model", "data", "teacher", "reward_model")
TOP_KEYS = ("output_dir", "base_model", "eval", "stages", "keep_checkpoints")
EVAL_KEYS = ("enabled", "base", "set")
# config keys the pipeline sets from the wiring (a stage's `set` may not override them)
WIRED_KEYS = {"generate": ("output.path",), "filter": ("input", "output", "report"), "journey": ("input", "output"),
              "mix": ("inputs", "output"), "sft": ("model.name", "data.train_path", "log.output_dir"),
              "grpo": ("model.name", "log.output_dir"), "rm": ("model.name", "log.output_dir"),
              "eval": ("model.name", "log.output_dir")}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class Stage:
    name: str
    kind: str
    set: dict[str, Any] = field(default_factory=dict)
    model: str | None = None  # STAGE or "base"
    data: list[str] = field(default_factory=list)
    teacher: str | None = None  # STAGE or "base" (generate)
    reward_model: str | None = None  # an rm STAGE (grpo): sets rewards.params.reward_model.model

    def refs(self) -> list[str]:
        """The earlier stages this one reads (``base`` excluded)."""
        return [r for r in [self.model, self.teacher, self.reward_model, *self.data] if r and r != "base"]


@dataclass
class PipelineEval:
    enabled: bool = True
    base: bool = True  # also evaluate the base model, the first row of the summary
    set: dict[str, Any] = field(default_factory=dict)


@dataclass
class PipelineConfig:
    output_dir: Path
    base_model: str
    eval: PipelineEval
    stages: list[Stage]
    source: str = ""  # the YAML file
    # False: a training stage's checkpoints/ are deleted once it is recorded as done (its final/ is what later
    # stages read; a 135M model's checkpoint with AdamW state is ~1.6 GB)
    keep_checkpoints: bool = False

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def run_dir(self, name: str) -> Path:
        return self.output_dir / "stages" / name

    def artifact(self, name: str) -> Path:
        """The path a stage produces: its final/ model folder, its data.jsonl, or its results.json."""
        if name == "base":
            return Path(self.base_model)
        produces = PRODUCES[self.stage(name).kind]
        folder = self.run_dir(name)
        return {"data": folder / "data.jsonl", "eval": folder / "results.json"}.get(produces, folder / "final")

    def model_name(self, ref: str | None) -> str:
        return self.base_model if ref in (None, "base") else str(self.artifact(ref))

    def dependants(self, name: str) -> list[str]:
        """Stages that read ``name``, directly or through others, in pipeline order."""
        out: set[str] = {name}
        for s in self.stages:
            if out & set(s.refs()):
                out.add(s.name)
        return [s.name for s in self.stages if s.name in out and s.name != name]


def _fail(where: str, message: str) -> None:
    raise ConfigError(f"{where}: {message}")


def _stage_of(raw: Any, index: int, earlier: dict[str, str]) -> Stage:
    where = f"stages[{index}]"
    if not isinstance(raw, dict):
        _fail(where, f"expected a mapping with keys {', '.join(STAGE_KEYS)}, got {raw!r}")
    name = raw.get("name")
    if not isinstance(name, str) or not NAME.match(name) or name == "base":
        _fail(where, f"'name' must be a folder-safe name other than 'base' (letters, digits, _ . -), got {name!r}")
    where = f"stage '{name}'"
    if name in earlier:
        _fail(where, "the name is used by an earlier stage; stage names must be unique")
    unknown = sorted(set(raw) - set(STAGE_KEYS))
    if unknown:
        _fail(where, f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(STAGE_KEYS)}")
    kind = raw.get("kind")
    if kind not in KINDS:
        _fail(where, f"unknown kind {kind!r}; allowed: {', '.join(KINDS)}")
    sets = raw.get("set") or {}
    if not isinstance(sets, dict) or not all(isinstance(k, str) and k for k in sets):
        _fail(where, "'set' must be a mapping of dotted config keys to values, e.g. {train.lr: 1.0e-5}")
    for key in sets:
        if key in WIRED_KEYS[kind] or any(key.startswith(w + ".") for w in WIRED_KEYS[kind]):
            _fail(f"{where}, set.{key}", f"is set by the pipeline from the stage's inputs and run folder "
                                         f"(OUTPUT/stages/{name}); remove it (pipeline-managed keys of {kind}: "
                                         f"{', '.join(WIRED_KEYS[kind])})")
    for key in ("model", "data", "teacher", "reward_model"):
        if raw.get(key) is not None and key not in INPUTS[kind]:
            allowed = ", ".join(INPUTS[kind])
            _fail(f"{where}, {key}", f"a {kind} stage takes no '{key}' input; its inputs: {allowed}")
    data = raw.get("data")
    data = [] if data is None else [data] if isinstance(data, str) else data
    if not isinstance(data, list) or not all(isinstance(d, str) for d in data):
        _fail(f"{where}, data", f"expected a stage name or a list of stage names, got {raw.get('data')!r}")
    if len(data) > 1 and kind != "mix":
        _fail(f"{where}, data", f"a {kind} stage reads one dataset; combine several with a mix stage first")
    if kind in ("filter", "journey", "mix", "sft") and not data:
        _fail(f"{where}, data", f"a {kind} stage needs 'data': the stage(s) whose dataset it reads")
    stage = Stage(name=name, kind=kind, set=dict(sets), model=raw.get("model"), data=data,
                  teacher=raw.get("teacher"), reward_model=raw.get("reward_model"))
    _check_refs(stage, earlier, where)
    return stage


def _check_refs(stage: Stage, earlier: dict[str, str], where: str) -> None:
    """Each input names an earlier stage producing the right kind of artifact (or base, for models)."""
    wanted = {"model": ("model",), "teacher": ("model",), "reward_model": ("reward_model",)}
    checks = [(key, getattr(stage, key), wanted[key]) for key in wanted] + [("data", d, ("data",)) for d in stage.data]
    for key, ref, produces in checks:
        if ref is None:
            continue
        if not isinstance(ref, str):
            _fail(f"{where}, {key}", f"expected a stage name, got {ref!r}")
        if ref == "base" and key in ("model", "teacher"):
            continue
        if ref not in earlier:
            or_base = "; or base" if key in ("model", "teacher") else ""
            _fail(f"{where}, {key}", f"'{ref}' is not an earlier stage (stages run in order; earlier stages: "
                                     f"{', '.join(earlier) or 'none'}{or_base})")
        if PRODUCES[earlier[ref]] not in produces:
            _fail(f"{where}, {key}", f"'{ref}' is a {earlier[ref]} stage, which produces a {PRODUCES[earlier[ref]]}, "
                                     f"not a {' or '.join(produces)}")
    if stage.kind == "generate" and stage.teacher is not None and "teacher.name" in stage.set:
        _fail(f"{where}, teacher", "give either 'teacher: STAGE' or set teacher.name, not both")


def parse_pipeline(data: Any, source: str = "") -> PipelineConfig:
    """Validate the raw YAML mapping and build every stage's job config once (``build_job_config``)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source or 'pipeline'}: expected a mapping with keys {', '.join(TOP_KEYS)}")
    # keys starting with "x-" hold YAML anchors shared by stages (as in docker compose) and are otherwise ignored
    unknown = sorted(k for k in set(data) - set(TOP_KEYS) if not str(k).startswith("x-"))
    if unknown:
        raise ConfigError(f"unknown pipeline key(s) {', '.join(unknown)}; allowed: {', '.join(TOP_KEYS)}, and "
                          f"x-NAME keys for YAML anchors")
    for key in ("output_dir", "base_model"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise ConfigError(f"pipeline key '{key}' is required (a string)")
    raw_eval = data.get("eval") or {}
    if not isinstance(raw_eval, dict) or set(raw_eval) - set(EVAL_KEYS):
        raise ConfigError(f"pipeline key 'eval': a mapping with keys {', '.join(EVAL_KEYS)}, got {raw_eval!r}")
    ev = PipelineEval(enabled=bool(raw_eval.get("enabled", True)), base=bool(raw_eval.get("base", True)),
                      set=dict(raw_eval.get("set") or {}))
    if "model.name" in ev.set or "log.output_dir" in ev.set:
        raise ConfigError("pipeline eval.set: model.name and log.output_dir are set by the pipeline per stage")
    stages_raw = data.get("stages")
    if not isinstance(stages_raw, list) or not stages_raw:
        raise ConfigError("pipeline key 'stages' must be a non-empty list of stages")
    earlier: dict[str, str] = {}
    stages = []
    for i, raw in enumerate(stages_raw):
        stage = _stage_of(raw, i, earlier)
        earlier[stage.name] = stage.kind
        stages.append(stage)
    keep = data.get("keep_checkpoints", False)
    if not isinstance(keep, bool):
        raise ConfigError(f"pipeline key 'keep_checkpoints' must be true or false, got {keep!r}")
    cfg = PipelineConfig(output_dir=Path(data["output_dir"]), base_model=data["base_model"], eval=ev, stages=stages,
                         source=source, keep_checkpoints=keep)
    from r1lab.pipeline.stages import build_eval_config, build_job_config

    for stage in stages:
        build_job_config(cfg, stage)
    if ev.enabled:
        build_eval_config(cfg, "base", cfg.base_model)
    return cfg


def load_pipeline(path: str | Path, output_dir: str | None = None) -> PipelineConfig:
    """Read and validate a pipeline YAML file (``output_dir`` overrides the file's)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"pipeline file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if output_dir is not None and isinstance(data, dict):
        data["output_dir"] = output_dir
    return parse_pipeline(data, str(path))


def job_config(cls, items: dict[str, Any], where: str) -> Any:
    """``cls`` from its defaults and dotted ``items`` through ``load_config`` (JSON values are valid YAML)."""
    try:
        return load_config(cls, None, [f"{key}={json.dumps(value)}" for key, value in items.items()])
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
