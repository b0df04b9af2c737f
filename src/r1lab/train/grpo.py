"""The GRPO loop. Reads top to bottom: generate -> score -> advantages -> loss -> step -> sync -> log -> checkpoint.

DeepSeekMath (arXiv 2402.03300) section 4 and DeepSeek-R1 (arXiv 2501.12948) section 2.2; variants (Dr. GRPO,
DAPO, RLOO) are selected by name from ``r1lab.algos``.
"""

from __future__ import annotations

import copy
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from r1lab.config import GRPOConfig
from r1lab.evals.accuracy import accuracy_metrics, evaluate_accuracy
from r1lab.models.checkpointing import enable_activation_checkpointing
from r1lab.models.loading import load_model
from r1lab.models.lora import MergedCopy, plain_copy, save_final, wrap_lora
from r1lab.train.memory_plan import memory_summary
from r1lab.models.templates import assistant_text, build_prompt
from r1lab.rewards import RewardContext, score_batch
from r1lab.parallel import all_reduce_sum, gather_lists, shard_bounds
from r1lab.parallel.sharding import full_state_dict, shard_layers
from r1lab.rollout.base import SamplingParams
from r1lab.rollout.engines import build_engine
from r1lab.rollout.sampling import prompt_seed
from r1lab.rollout.tools import ToolRollout, tool_metrics, with_tool_calls
from r1lab.tasks import load_task_config
from r1lab.tasks.prompt_limits import fit_task, prompt_limit
from r1lab.tasks.sampler import PromptSampler
from r1lab.track.metrics import MetricsLogger, read_jsonl
from r1lab.track.plots import plot_training
from r1lab.track.progress import Progress
from r1lab.train import checkpoint as ckpt
from r1lab.train.optim import build_optimizer
from r1lab.train.grpo_metrics import eval_metrics, eval_samples, rollout_metrics, row_records, sample_rows
from r1lab.train.critic import Critic
from r1lab.train.dynamic_sampling import collect_informative
from r1lab.train.grpo_advantages import step_advantages
from r1lab.train.grpo_update import optimize_policy, rollout_kl
from r1lab.train.run_setup import DTYPE, start_run, write_config

@dataclass
class RunResult:
    run_dir: Path
    final_model_dir: Path
    eval_before: dict | None
    eval_after: dict | None
    steps_done: int


def train_grpo(cfg: GRPOConfig, resume: bool = False) -> RunResult:
    run_dir, final_dir, ckpt_dir, checkpoints, device, dist = start_run(cfg, resume)
    if cfg.train.prompts_per_step % dist.world_size:
        raise ValueError(f"train.prompts_per_step={cfg.train.prompts_per_step} is the global batch and must divide "
                         f"evenly over the {dist.world_size} ranks (each rank owns whole groups); use a multiple of "
                         f"{dist.world_size}")
    write_config(run_dir, cfg, dist)

    # --- model, reference, rollout engine, task ------------------------------------------------------------
    if dist.is_main:  # planned from the model's config before any weight loads (details: --dry-run)
        print(memory_summary(cfg, "grpo", device, dist.world_size), flush=True)
    loaded = load_model(cfg.model.name, dtype=DTYPE[cfg.model.train_dtype], device=device)
    policy, tokenizer = loaded.model, loaded.tokenizer
    policy.config.use_cache = False
    reference = None
    if cfg.algo.beta > 0 and not cfg.lora.enabled:  # beta = 0: no reference model at all (memory and one forward
        reference = copy.deepcopy(policy).eval().requires_grad_(False)  # pass saved)
    # FSDP: the engine generates from a whole copy of the policy, refreshed from the shards after every step
    sharded = cfg.train.parallel == "fsdp" and dist.distributed
    rollout_model = copy.deepcopy(policy).eval().requires_grad_(False) if sharded else policy
    merged = None
    if cfg.lora.enabled:  # LoRA (PEFT): the engine generates from a plain copy holding W + scale * B A
        if sharded:
            raise ValueError("lora.rank > 0 with train.parallel=fsdp is not supported; use train.parallel=ddp "
                             "(the frozen base is small next to full fine-tuning's optimizer state)")
        rollout_model = plain_copy(policy, DTYPE[cfg.model.rollout_dtype])
        policy = wrap_lora(policy, cfg.lora)
        merged = MergedCopy(rollout_model, policy)
        merged.sync()  # lora.init_from: the copy starts from the loaded adapter
        if cfg.algo.beta > 0:  # the reference is the policy with its adapter off (r1lab.models.lora), no copy
            reference = policy
    engine = build_engine(cfg.rollout, rollout_model, tokenizer, dtype=DTYPE[cfg.model.rollout_dtype],
                          seed=cfg.train.seed, max_new_tokens=cfg.eval.max_new_tokens)
    if cfg.tools.enabled and cfg.algo.dynamic_sampling:
        raise ValueError("tools.enabled=true with algo.dynamic_sampling=true is not supported yet (the regrouped "
                         "batch would lose the tool-output mask); set algo.dynamic_sampling=false")
    # tools.enabled: multi-turn rollouts with the python tool (r1lab.rollout.tools), in training and evaluation
    rollout = ToolRollout(engine, tokenizer, cfg.tools, cfg.prompt.prefill) if cfg.tools.enabled else engine

    def sync_engine() -> float:  # seconds, gathering included
        start = time.monotonic()
        if sharded:
            rollout_model.load_state_dict(full_state_dict(policy), strict=False)  # a collective: every rank
        if merged is not None:
            merged.sync()
        engine.sync_weights(rollout_model)
        return time.monotonic() - start

    if cfg.train.gradient_checkpointing:  # after the copies above: only the trained policy replays its layers
        enable_activation_checkpointing(policy)
    if sharded:  # before the optimizer, which then holds (and steps) only this rank's shards
        shard_layers(policy)
        if reference is not None:  # forward only, in the same padded micro-batches: its layers cost 1/W per rank
            shard_layers(reference)
    prompt_of = lambda ex: build_prompt(ex, tokenizer, cfg.prompt.template, cfg.prompt.system, cfg.prompt.instruction,  # noqa: E731
                                        cfg.prompt.prefill)
    max_prompt = prompt_limit(cfg.rollout.max_prompt_tokens, "rollout.max_prompt_tokens", policy.config,
                              max(cfg.rollout.max_new_tokens, cfg.eval.max_new_tokens))
    task = fit_task(load_task_config(cfg.task), lambda ex: [prompt_of(ex)], tokenizer, max_prompt,
                    cfg.task.overlong_prompts)  # before any generation: an overlong prompt stops the run here
    ctx = RewardContext(task=task, extraction=tuple(cfg.rewards.extraction), params=cfg.rewards.params,
                        tokenizer=tokenizer, max_new_tokens=cfg.rollout.max_new_tokens)
    sampler = PromptSampler(len(task.train), seed=cfg.train.seed)
    if cfg.algo.dynamic_sampling and dist.distributed:
        raise ValueError("algo.dynamic_sampling=true runs in one process only: keeping the first prompts_per_step "
                         "informative groups of the global draw would need every rank's groups; launch without "
                         "torchrun, or set algo.dynamic_sampling=false")
    critic = None
    if cfg.algo.advantage == "gae":  # PPO: a value model with its own optimizer (r1lab.train.critic)
        critic = Critic(cfg.critic, cfg.critic.model or cfg.model.name, DTYPE[cfg.model.train_dtype], device, dist,
                        micro_batch_size=cfg.train.micro_batch_size,
                        low_precision_update=cfg.model.low_precision_update, seed=cfg.train.seed)
    optimizer, scheduler = build_optimizer(
        policy, cfg.train.lr, cfg.train.weight_decay, (cfg.train.adam_beta1, cfg.train.adam_beta2), cfg.train.steps,
        cfg.train.warmup_steps, cfg.train.schedule, cfg.train.min_lr_ratio, cfg.model.low_precision_update,
        cfg.train.seed)
    train_sampling = SamplingParams(cfg.rollout.temperature, cfg.rollout.top_p, cfg.rollout.top_k, cfg.rollout.max_new_tokens)

    # train_seconds: generation + scoring + optimisation; held-out evaluation is not counted
    start_step, counters = 0, {"skipped_steps": 0, "reward_errors": 0, "train_seconds": 0.0}
    if resume and checkpoints:
        state = ckpt.load_checkpoint(checkpoints[-1], policy, optimizer, scheduler)
        sampler.load_state_dict(state["sampler"])
        if critic is not None:
            critic.load_state_dict(state["critic"])
        start_step, counters = state["step"], state["counters"]
        sync_engine()
        print(f"resumed from {checkpoints[-1]} (step {start_step} of {cfg.train.steps})")
    logger = MetricsLogger(run_dir, resume_step=start_step, tensorboard=cfg.log.tensorboard) if dist.is_main else None
    eval_lo, eval_hi = shard_bounds(len(task.eval), dist)  # each rank evaluates its part of the held-out problems
    eval_seeds = [cfg.train.seed * 7919 + i for i in range(len(task.eval))]  # sampled eval: one seed per problem

    def run_eval(step: int) -> dict:
        mine = task.eval[eval_lo:eval_hi]
        _, records = evaluate_accuracy(rollout, mine, prompt_of, ctx, SamplingParams(0.0, 1.0, 0, cfg.eval.max_new_tokens),
                                       prefill=cfg.prompt.prefill)
        records = gather_lists(dist, records)
        out = eval_metrics(records)
        if cfg.eval.sampled:
            _, sampled = evaluate_accuracy(rollout, mine, prompt_of, ctx,
                                           SamplingParams(cfg.eval.sampled_temperature, 1.0, 0, cfg.eval.max_new_tokens),
                                           seeds=eval_seeds[eval_lo:eval_hi], prefill=cfg.prompt.prefill)
            out["eval/sampled_accuracy"] = accuracy_metrics(gather_lists(dist, sampled))["accuracy"]
        if dist.is_main:
            (run_dir / "eval").mkdir(exist_ok=True)
            with (run_dir / "eval" / f"step_{step}.jsonl").open("w") as f:
                f.writelines(json.dumps(r) + "\n" for r in records)
            if logger:  # a few held-out completions beside the training samples, the same problems every time
                logger.log_samples(step, eval_samples(records, cfg.log.samples_per_step))
        return out

    eval_before = None
    if cfg.eval.every and start_step == 0:
        eval_before = run_eval(0)
        if logger:
            logger.log(0, eval_before)

    # --- the loop ----------------------------------------------------------------------------------------------
    progress = Progress(total=cfg.train.steps, initial=start_step, enabled=cfg.log.progress and dist.is_main, desc="grpo")
    per_rank = cfg.train.prompts_per_step // dist.world_size
    first = dist.rank * per_rank  # this rank's prompts: [first, first + per_rank) of each step's global batch
    step = start_step
    for step in range(start_step + 1, cfg.train.steps + 1):
        t0 = time.monotonic()

        times = {"gen": 0.0, "score": 0.0}

        def rollout_round(r: int):
            # 1. generate: G completions per prompt. Every rank draws the same global batch and keeps its part; a
            # prompt's seed comes from (step, its place in the step's global draws), never from the rank
            start = time.monotonic()
            P = cfg.train.prompts_per_step
            examples = [task.train[i] for i in sampler.next_indices(P)][first : first + per_rank]
            seeds = [prompt_seed(cfg.train.seed, step, r * P + first + i) for i in range(per_rank)]
            batch = rollout.generate([prompt_of(e) for e in examples], n=cfg.rollout.group_size, sampling=train_sampling,
                                    seeds=seeds)
            batch = _to_device(batch, device)
            batch.texts = [assistant_text(cfg.prompt.prefill, t) for t in batch.texts]  # rewards read the whole turn
            times["gen"] += time.monotonic() - start

            # 2. score every completion against its own example
            start = time.monotonic()
            grouped_examples = with_tool_calls([e for e in examples for _ in range(cfg.rollout.group_size)], batch)
            results = score_batch(batch.texts, grouped_examples, cfg.rewards.weights, ctx,
                                  token_lengths=batch.lengths.long().tolist(), apply_to=cfg.rewards.apply_to)
            counters["reward_errors"] += sum(not x.valid for x in results)
            times["score"] += time.monotonic() - start
            return examples, batch, results

        sampling_metrics = {}
        if cfg.algo.dynamic_sampling:  # DAPO: drop all-equal groups, draw more prompts (r1lab.train.dynamic_sampling)
            examples, batch, results, sampling_metrics = collect_informative(
                rollout_round, per_rank, cfg.algo.dynamic_sampling_max_rounds)
        else:
            examples, batch, results = rollout_round(0)
        grouped_examples = with_tool_calls([e for e in examples for _ in range(cfg.rollout.group_size)], batch)
        rewards = torch.tensor([r.total for r in results], dtype=torch.float32)  # (B,)
        valid = torch.tensor([r.valid for r in results])  # (B,)
        t_gen, t_score = times["gen"], times["score"]

        # 3. advantages (r1lab.train.grpo_advantages): group-relative, over the global batch (reinforce_pp), or GAE
        # with the critic; with kl_in=reward the KL to the reference enters each token's advantage
        G = cfg.rollout.group_size
        # (B, C); with tools, only the tokens the policy sampled (tool outputs are out of the loss and the KL)
        loss_mask = (batch.loss_mask if batch.loss_mask is not None else batch.completion_mask).clone()
        kl = rollout_kl(cfg, policy, reference, batch) if cfg.algo.kl_in == "reward" else None  # (B, C)
        values = critic.values(batch) if critic is not None else None  # (B, C)
        adv, returns = step_advantages(cfg, rewards.to(device), valid.to(device), batch.completion_mask, kl, values,
                                       lambda xs: all_reduce_sum(dist, xs))  # (B,) or (B, C)
        seq_adv = adv if adv.dim() == 1 else (adv * loss_mask).sum(1) / loss_mask.sum(1).clamp(min=1)  # logged (B,)
        if cfg.algo.mask_truncated:
            loss_mask[batch.truncated] = 0.0

        # 4-5. loss and optimizer step(s)
        t_opt = time.monotonic()
        warming_up = critic is not None and step <= cfg.critic.warmup_steps  # PPO: fit the value model first
        step_metrics = optimize_policy(cfg, policy, reference, optimizer, batch, adv, loss_mask, dist,
                                       update=not warming_up)
        if critic is not None:
            step_metrics.update(critic.update(batch, values, returns, loss_mask))
        step_metrics.update(sampling_metrics)
        t_opt = time.monotonic() - t_opt
        if step_metrics.pop("skipped"):
            counters["skipped_steps"] += 1
        used_lr = optimizer.param_groups[0]["lr"]  # the rate this step used (get_last_lr after step() is the next one)
        with warnings.catch_warnings():  # a step with nothing to learn skips optimizer.step(); the schedule moves on
            warnings.simplefilter("ignore", UserWarning)
            scheduler.step()

        # 6. the rollout copy follows the policy
        t_sync = sync_engine()

        # 7. log: rollout metrics and samples over the global batch (every rank's rows, in rank order)
        rows = gather_lists(dist, row_records(batch, results, grouped_examples, seq_adv))
        metrics = rollout_metrics(rows, G)
        metrics.update(step_metrics)
        metrics.update(tool_metrics(batch))  # tools.enabled: call rate, error rate (this rank's rows)
        step_seconds = time.monotonic() - t0
        counters["train_seconds"] += step_seconds
        metrics.update({"time/step_s": step_seconds, "time/generate_s": t_gen, "time/score_s": t_score,
                        "time/optimize_s": t_opt, "time/weight_sync_s": t_sync,
                        "time/train_total_s": counters["train_seconds"], "lr": used_lr, "counters/skipped_steps": counters["skipped_steps"],
                        "counters/reward_errors": counters["reward_errors"]})
        limit_s = cfg.train.time_limit_minutes * 60
        out_of_time = limit_s > 0 and counters["train_seconds"] >= limit_s
        last = step == cfg.train.steps or out_of_time
        if cfg.eval.every and (step % cfg.eval.every == 0 or last):
            metrics.update(run_eval(step))
        if logger:
            logger.log(step, metrics)
            logger.log_samples(step, sample_rows(rows, cfg.log.samples_per_step))
        info = {"reward": metrics["reward/mean"], "acc": metrics.get("eval/greedy_accuracy")}
        if limit_s > 0:  # the step-count ETA overstates a time-boxed run; show the budget left beside it
            info["budget_min"] = max(0.0, (limit_s - counters["train_seconds"]) / 60)
        progress.update(step, info)

        # 8. checkpoint
        if (cfg.log.checkpoint_every and step % cfg.log.checkpoint_every == 0) or last:
            ckpt.save_checkpoint(ckpt_dir, step, policy, optimizer, scheduler,
                                 {"sampler": sampler.state_dict(), "counters": counters,
                                  **({"critic": critic.state_dict()} if critic is not None else {})},
                                 keep=cfg.log.keep_checkpoints,
                                 dist=dist)
        if last:
            break
    progress.close()
    if rollout is not engine:
        rollout.close()  # the tool's sandboxes
    final_weights = full_state_dict(policy) if sharded else None  # a collective: every rank, before rank 0 writes
    if not dist.is_main:  # rank 0 writes the plots and final/; the others are done
        return RunResult(run_dir=run_dir, final_model_dir=final_dir, eval_before=None, eval_after=None, steps_done=step)
    logger.close()

    # --- outputs: final HF folder and plots --------------------------------------------------------------------
    records = read_jsonl(run_dir / "metrics.jsonl")
    plot_training(records, run_dir / "training.png", title=f"GRPO {cfg.model.name} on {cfg.task.name}")
    if step < cfg.train.steps:
        print(f"stopped at step {step} of {cfg.train.steps}: train.time_limit_minutes={cfg.train.time_limit_minutes} reached")
    if merged is not None:  # LoRA: the merged model (plain HF) in final/, the adapter in final/adapter
        save_final(policy, tokenizer, final_dir)
    else:
        policy.config.use_cache = True  # the final model is written whether the run ended on steps or on time
        policy.save_pretrained(final_dir, safe_serialization=True, state_dict=final_weights)
        tokenizer.save_pretrained(final_dir)
    evals = [r for r in records if "eval/greedy_accuracy" in r]
    return RunResult(run_dir=run_dir, final_model_dir=final_dir, eval_before=evals[0] if evals else None,
                     eval_after=evals[-1] if len(evals) > 1 else None, steps_done=step)


def _to_device(batch, device):
    for name in ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "truncated", "rollout_logprobs",
                 "loss_mask"):
        if getattr(batch, name) is not None:
            setattr(batch, name, getattr(batch, name).to(device))
    return batch
