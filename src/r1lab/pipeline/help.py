"""Help text of ``r1lab pipeline``: the YAML format and the stage kinds."""

import textwrap

DESCRIPTION = textwrap.fill(
    "Run a multi-stage recipe, e.g. the DeepSeek-R1 pipeline (cold-start SFT -> reasoning RL -> rejection sampling "
    "-> SFT -> RL for all scenarios), as one resumable job. Stages run in order, in-process; each writes "
    "OUTPUT/stages/NAME. A stage is recorded in OUTPUT/pipeline_state.json when its outputs are complete and is "
    "skipped on later runs (--resume) while its config and its inputs are unchanged (a changed one stops the run "
    "and asks for --rerun); a killed pipeline continues at the stage it was in, and a training stage "
    "(sft, grpo, rm) resumes from its own last checkpoint. OUTPUT/lineage.json records each stage's inputs (paths "
    "and content fingerprints: sha256 of datasets, a fingerprint of model folders), outputs, resolved config and "
    "timings. After the base model and every sft/grpo stage the same held-out evaluation runs (r1lab eval, greedy, "
    "n=1, with the eval section's settings); the run ends by printing a table (stage, model, held-out accuracy, "
    "mean length, duration) and writing summary.json, summary.md and summary.png.", width=110)

EPILOG = """pipeline YAML:
  output_dir: runs/r1           run folder (required)
  base_model: smollm2-135m      what `model: base` and `teacher: base` mean (required)
  eval:                         the evaluation after every model-producing stage (optional)
    enabled: true               false = no evaluations
    base: true                  also evaluate the base model first
    set: {task.eval_size: 100}  keys of `r1lab eval --help` (defaults here: task.split=held_out,
                                task.eval_size=200, sampling.n=1, sampling.temperature=0,
                                metrics.ks=[1], cache in OUTPUT/cache)
  keep_checkpoints: false       false: delete a training stage's checkpoints/ once it is done (final/ stays)
  stages:                       run in this order
    - name: cold_start          folder-safe, unique; the run folder is OUTPUT/stages/NAME
      kind: sft                 one of the kinds below
      model: base               inputs name earlier stages (or base): model, data, teacher, reward_model
      data: clean
      set: {train.steps: 50}    the job's own config keys, dotted (see `r1lab KIND --help`)

  Every stage's config is built and validated when the file is loaded (defaults <- set <- wiring), so a typo
  fails before anything runs, naming the stage and the key. YAML anchors share settings such as the task and
  prompt sections between stages: define them under top-level keys named x-NAME (ignored otherwise), e.g.
  x-task: &task {task.name: rg:basic_arithmetic}, and use them with set: {<<: *task, train.lr: 1.0e-5}.

stage kinds (inputs; what the pipeline sets; artifact):
  generate  teacher: STAGE|base (or set teacher.name, e.g. program:arithmetic); output.path;
            -> data.jsonl (trace rows; a re-run appends only missing rows)
  filter    data: STAGE; input, output, report; inherits the data stage's task section (the verifier looks
            problems up by id) -> data.jsonl
  journey   data: STAGE (a filter with verify.keep_wrong=true); input, output -> data.jsonl
  mix       data: [STAGE, ...]; inputs, output; set caps: {STAGE: max rows}, shuffle, seed -> data.jsonl
            (rows tagged meta.mix_source; R1's reasoning + general SFT set)
  sft       model: STAGE|base (default base), data: STAGE; model.name, data.train_path, log.output_dir
            -> final/
  grpo      model: STAGE|base, reward_model: an rm STAGE (sets rewards.params.reward_model.model);
            model.name, log.output_dir -> final/. For R1's last stage use task.name=mix with
            task.params.sources and rewards.apply_to={accuracy: verifiable, reward_model: general}
  rm        model: STAGE|base (the backbone), data: STAGE (preference pairs; default: the built-in ones);
            model.name, log.output_dir -> final/ (a reward model; not evaluated as a policy)
  eval      model: STAGE|base; model.name, log.output_dir; starts from the eval section's settings
            -> results.json (a row of the summary)

examples: configs/r1_cpu.yaml (the CPU-sized R1 recipe), configs/r1_gpu.yaml (a 1.5B model on one GPU)."""
