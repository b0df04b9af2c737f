"""The SFT loop. Reads top to bottom: batch -> forward -> completion-only loss (+ distillation) -> step -> log ->
evaluate -> checkpoint.

DeepSeek-R1 (arXiv 2501.12948) section 2.3.1 (cold start) and 2.4 (distillation: plain SFT of small models on
R1's verified traces); Sky-T1 (17K traces). Classic logit distillation (Hinton et al., arXiv 1503.02531) when a
teacher sharing the student's tokenizer is configured.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from r1lab.algos.distill import IGNORE, chunked_sft_loss
from r1lab.config import SFTConfig
from r1lab.data.sft_data import (SFTRow, TokenBatch, TokenizedExample, drop_overlap, micro_batches, read_sft_rows,
                                 render_row, split_held_out)
from r1lab.models.checkpointing import enable_activation_checkpointing
from r1lab.models.loading import load_model
from r1lab.models.lora import MergedCopy, plain_copy, save_final, wrap_lora
from r1lab.train.memory_plan import memory_summary
from r1lab.parallel import DistContext, all_reduce_gradients, all_reduce_max, all_reduce_sum, shard_bounds
from r1lab.parallel.sharding import clip_grad_norm, full_state_dict, is_sharded, shard_layers
from r1lab.tasks.sampler import PromptSampler
from r1lab.track.metrics import MetricsLogger, read_jsonl
from r1lab.track.plots import plot_training
from r1lab.track.progress import Progress
from r1lab.train import checkpoint as ckpt
from r1lab.train.run_setup import DTYPE, start_run, write_config
from r1lab.train.optim import build_optimizer


@dataclass
class SFTResult:
    run_dir: Path
    final_model_dir: Path
    eval_before: dict | None
    eval_after: dict | None
    steps_done: int


@dataclass
class SFTData:
    train: list[TokenizedExample]
    held_out: list[TokenizedExample]
    stats: dict


def train_sft(cfg: SFTConfig, resume: bool = False) -> SFTResult:
    run_dir, final_dir, ckpt_dir, checkpoints, device, dist = start_run(cfg, resume)
    if cfg.train.batch_size % dist.world_size:
        raise ValueError(f"train.batch_size={cfg.train.batch_size} is the global batch and must divide evenly over "
                         f"the {dist.world_size} ranks; use a multiple of {dist.world_size}")

    # --- data and task first (a bad row fails before any model loads), then model and teacher ------------------
    task = None
    if cfg.eval.accuracy:
        from r1lab.tasks import load_task_config

        task = load_task_config(cfg.task)
    rows = select_rows(cfg, task.eval if task is not None else None)
    if dist.is_main:  # planned from the model's config before any weight loads (details: --dry-run)
        print(memory_summary(cfg, "sft", device, dist.world_size), flush=True)
    loaded = load_model(cfg.model.name, dtype=DTYPE[cfg.model.train_dtype], device=device)
    policy, tokenizer = loaded.model, loaded.tokenizer
    check_model_forward(policy, cfg.data.pack)
    rollout_model = merged = None
    sharded = cfg.train.parallel == "fsdp" and dist.distributed
    if sharded and cfg.lora.enabled:
        raise ValueError("lora.rank > 0 with train.parallel=fsdp is not supported; use train.parallel=ddp "
                         "(the frozen base is small next to full fine-tuning's optimizer state)")
    if sharded and dist.is_main and cfg.eval.every:  # rank 0 generates from a whole copy, refreshed from the shards
        rollout_model = plain_copy(policy, DTYPE[cfg.model.rollout_dtype])
    if cfg.lora.enabled:  # LoRA (PEFT): generation evals run on a plain copy holding W + scale * B A
        if dist.is_main and cfg.eval.every:
            rollout_model = plain_copy(policy, DTYPE[cfg.model.rollout_dtype])
        policy = wrap_lora(policy, cfg.lora)
        merged = MergedCopy(rollout_model, policy) if rollout_model is not None else None
    if cfg.train.gradient_checkpointing:
        enable_activation_checkpointing(policy)
    teacher = load_teacher(cfg, policy, tokenizer, device) if cfg.distill.teacher else None
    data = tokenize_rows(cfg, rows, tokenizer)
    if dist.is_main:
        print(f"sft data: {data.stats['train_examples']} training examples ({data.stats['train_tokens']} trained "
              f"tokens), {data.stats['held_out_examples']} held out; dropped {data.stats['dropped_too_long']} longer "
              f"than data.max_length, {data.stats['dropped_overlap']} sharing a prompt with a held-out set")
    write_config(run_dir, cfg, dist)
    if dist.is_main:
        (run_dir / "data.json").write_text(json.dumps(data.stats, indent=2))

    if sharded:  # before the optimizer, which then holds (and steps) only this rank's shards. The teacher is
        # sharded the same way (forward only): it is often the larger model, and its layers then cost 1/W per rank
        shard_layers(policy)
        if teacher is not None:
            shard_layers(teacher)
    total_steps = cfg.train.steps or math.ceil(cfg.train.epochs * len(data.train) / cfg.train.batch_size)
    sampler = PromptSampler(len(data.train), seed=cfg.train.seed)
    optimizer, scheduler = build_optimizer(
        policy, cfg.train.lr, cfg.train.weight_decay, (cfg.train.adam_beta1, cfg.train.adam_beta2), total_steps,
        cfg.train.warmup_steps, cfg.train.schedule, cfg.train.min_lr_ratio, cfg.model.low_precision_update,
        cfg.train.seed)
    engine = None  # generation evals run on rank 0 (the held-out loss is sharded over ranks)
    if dist.is_main and cfg.eval.every and (task is not None or (data.held_out and cfg.log.samples_per_step)):
        from r1lab.rollout.native_engine import NativeEngine

        engine = NativeEngine(rollout_model if rollout_model is not None else policy, tokenizer,
                              dtype=DTYPE[cfg.model.rollout_dtype], batch_size=cfg.eval.batch_size)

    start_step, counters = 0, {"train_seconds": 0.0, "skipped_steps": 0, "trained_tokens": 0}
    if resume and checkpoints:
        state = ckpt.load_checkpoint(checkpoints[-1], policy, optimizer, scheduler)
        sampler.load_state_dict(state["sampler"])
        start_step, counters = state["step"], state["counters"]
        print(f"resumed from {checkpoints[-1]} (step {start_step} of {total_steps})")
    logger = MetricsLogger(run_dir, resume_step=start_step, tensorboard=cfg.log.tensorboard) if dist.is_main else None
    held_lo, held_hi = shard_bounds(len(data.held_out), dist)

    def run_eval(step: int) -> dict:
        out = held_out_loss(cfg, policy, teacher, data.held_out[held_lo:held_hi], tokenizer, device,
                            dist, filler=data.held_out[0]) if data.held_out else {}
        if sharded and (task is not None or (data.held_out and cfg.log.samples_per_step)):
            weights = full_state_dict(policy)  # a collective: every rank gathers, rank 0 keeps a whole copy
            if rollout_model is not None:
                rollout_model.load_state_dict(weights, strict=False)
        if engine is not None:
            if merged is not None:
                merged.sync()
            engine.sync_weights(rollout_model if rollout_model is not None else policy)
            out.update(_generation_eval(cfg, engine, task, tokenizer, data.held_out, run_dir, step, logger))
        return out

    eval_before = None
    if cfg.eval.every and start_step == 0:
        eval_before = run_eval(0) or None  # empty when there is neither held-out data nor a task
        if eval_before and logger:
            logger.log(0, eval_before)

    # --- the loop ----------------------------------------------------------------------------------------------
    progress = Progress(total=total_steps, initial=start_step, enabled=cfg.log.progress and dist.is_main, desc="sft")
    per_rank = cfg.train.batch_size // dist.world_size
    first = dist.rank * per_rank  # this rank's examples: [first, first + per_rank) of each step's global batch
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    step = start_step
    for step in range(start_step + 1, total_steps + 1):
        t0 = time.monotonic()

        # 1. this step's examples, as packed (or one-example) rows in micro-batches
        examples = [data.train[i] for i in sampler.next_indices(cfg.train.batch_size)][first : first + per_rank]
        batches = micro_batches(examples, cfg.data.pack, cfg.data.max_length, cfg.train.micro_batch_size, pad_id)

        # 2-3. forward/backward with accumulation, clip, step
        lr = optimizer.param_groups[0]["lr"]  # the rate this step uses (logged as such, not the next step's)
        metrics = _optimize(cfg, policy, teacher, optimizer, batches, sum(len(e.input_ids) for e in examples), device,
                            dist)
        if metrics.pop("skipped"):
            counters["skipped_steps"] += 1
        scheduler.step()

        # 4. log
        step_seconds = time.monotonic() - t0
        counters["train_seconds"] += step_seconds
        counters["trained_tokens"] += metrics["train/tokens"]
        metrics.update({"time/step_s": step_seconds, "time/train_total_s": counters["train_seconds"],
                        "train/tokens_per_s": metrics["train/tokens"] / max(step_seconds, 1e-9),
                        "train/epoch": (sampler.epoch * len(data.train) + sampler.position) / len(data.train),
                        "lr": lr, "counters/skipped_steps": counters["skipped_steps"],
                        "counters/trained_tokens": counters["trained_tokens"]})
        limit_s = cfg.train.time_limit_minutes * 60
        out_of_time = limit_s > 0 and counters["train_seconds"] >= limit_s
        last = step == total_steps or out_of_time
        if cfg.eval.every and (step % cfg.eval.every == 0 or last):
            metrics.update(run_eval(step))
        if logger:
            logger.log(step, metrics)
        info = {"loss": metrics["loss/train"], "eval_loss": metrics.get("eval/loss")}
        if limit_s > 0:
            info["budget_min"] = max(0.0, (limit_s - counters["train_seconds"]) / 60)
        progress.update(step, info)

        # 5. checkpoint
        if (cfg.log.checkpoint_every and step % cfg.log.checkpoint_every == 0) or last:
            ckpt.save_checkpoint(ckpt_dir, step, policy, optimizer, scheduler,
                                 {"sampler": sampler.state_dict(), "counters": counters}, keep=cfg.log.keep_checkpoints,
                                 dist=dist)
        if last:
            break
    progress.close()
    final_weights = full_state_dict(policy) if sharded else None  # a collective: every rank, before rank 0 writes
    if not dist.is_main:  # rank 0 writes the plot and final/; the others are done
        return SFTResult(run_dir=run_dir, final_model_dir=final_dir, eval_before=None, eval_after=None, steps_done=step)
    logger.close()

    # --- outputs: final HF folder and plot ---------------------------------------------------------------------
    records = read_jsonl(run_dir / "metrics.jsonl")
    plot_training(records, run_dir / "training.png", title=f"SFT {cfg.model.name} on {Path(cfg.data.train_path).name}",
                  panels=PANELS)
    if step < total_steps:
        print(f"stopped at step {step} of {total_steps}: train.time_limit_minutes={cfg.train.time_limit_minutes} "
              f"reached")
    if cfg.lora.enabled:  # the merged model (plain HF) in final/, the adapter in final/adapter
        save_final(policy, tokenizer, final_dir)
    else:
        policy.save_pretrained(final_dir, safe_serialization=True, state_dict=final_weights)
        tokenizer.save_pretrained(final_dir)
    evals = [r for r in records if any(k.startswith("eval/") for k in r)]
    return SFTResult(run_dir=run_dir, final_model_dir=final_dir, eval_before=evals[0] if evals else None,
                     eval_after=evals[-1] if len(evals) > 1 else None, steps_done=step)


# --- data ------------------------------------------------------------------------------------------------------

@dataclass
class SFTRows:
    train: list[SFTRow]
    held_out: list[SFTRow]
    dropped_overlap: int


def select_rows(cfg: SFTConfig, task_eval: list | None = None) -> SFTRows:
    """Rows -> held-out split (or file) -> rows sharing a prompt with any held-out set removed from training."""
    rows = read_sft_rows(cfg.data.train_path)
    if cfg.data.eval_path:
        held_out = read_sft_rows(cfg.data.eval_path)
        train = drop_overlap(rows, held_out)
    else:
        train, held_out = split_held_out(rows, cfg.data.eval_size, cfg.data.seed)
    dropped = len(rows) - len(train) - (0 if cfg.data.eval_path else len(held_out))
    if task_eval is not None:  # the accuracy evaluation's problems never appear in training
        keys = {" ".join(e.question.split()) for e in task_eval}
        kept = [r for r in train if r.key not in keys]
        dropped += len(train) - len(kept)
        train = kept
    return SFTRows(train, held_out, dropped)


def tokenize_rows(cfg: SFTConfig, rows: SFTRows, tokenizer) -> SFTData:
    """Render every row with the prompt section; drop (and count) those longer than data.max_length."""
    p = cfg.prompt
    render = lambda r: render_row(r, tokenizer, p.template, p.system, p.instruction)  # noqa: E731
    train_ex = [render(r) for r in rows.train]
    held_ex = [render(r) for r in rows.held_out]
    fits = lambda e: len(e.input_ids) <= cfg.data.max_length and e.num_targets > 0  # noqa: E731
    dropped_long = sum(not fits(e) for e in train_ex + held_ex)
    train_ex, held_ex = [e for e in train_ex if fits(e)], [e for e in held_ex if fits(e)]
    if not train_ex:
        raise ValueError(f"{cfg.data.train_path}: no training example left (dropped {dropped_long} longer than "
                         f"data.max_length={cfg.data.max_length}, {rows.dropped_overlap} sharing a held-out prompt)")
    stats = {"train_examples": len(train_ex), "held_out_examples": len(held_ex),
             "train_prompts": len({e.key for e in train_ex}), "held_out_prompts": len({e.key for e in held_ex}),
             "train_tokens": sum(e.num_targets for e in train_ex), "dropped_too_long": dropped_long,
             "dropped_overlap": rows.dropped_overlap}
    return SFTData(train_ex, held_ex, stats)


# --- model checks --------------------------------------------------------------------------------------------

def check_model_forward(model, pack: bool) -> None:
    """Fail early when the loss's assumptions do not hold for this model.

    1. ``lm_head(hidden)`` must be the model's logits (the loss projects only completion positions; models with
       logit soft-capping or scaling would silently train on other logits).
    2. With packing, positions restarting at 0 must start a new attention block. transformers builds that
       block-diagonal mask from ``position_ids`` only when no attention mask and no cache are passed (measured:
       with use_cache left on, Llama attends across packed examples), so we pass use_cache=False and check it.
    """
    device = next(model.parameters()).device
    vocab = model.get_output_embeddings().weight.shape[0]
    ids = (torch.arange(7, device=device) * 7 + 3) % vocab
    a, b = ids[None, :4], ids[None, 4:]
    atol = 1e-4 if next(model.parameters()).dtype == torch.float32 else 5e-2
    with torch.no_grad():
        hidden = model.base_model(input_ids=a, use_cache=False).last_hidden_state
        logits = model(input_ids=a, use_cache=False).logits
        if not torch.allclose(model.get_output_embeddings()(hidden), logits, atol=atol, rtol=1e-3):
            raise ValueError(f"{type(model).__name__}: the LM head applied to the last hidden state does not give "
                             f"the model's logits (logit scaling or soft-capping?); r1lab sft does not support it yet")
        if pack:
            restart = torch.tensor([[0, 1, 2, 3, 0, 1, 2]], device=device)  # two examples: 4 then 3 tokens
            packed = model.base_model(input_ids=ids[None], position_ids=restart, use_cache=False).last_hidden_state
            alone = model.base_model(input_ids=b, use_cache=False).last_hidden_state
            if not torch.allclose(packed[:, 4:], alone, atol=atol, rtol=1e-3):
                raise ValueError(f"{type(model).__name__} with attention {model.config._attn_implementation!r} lets "
                                 f"packed examples attend to each other; set data.pack=false")


def load_teacher(cfg: SFTConfig, student, tokenizer, device: torch.device):
    """The distillation teacher, frozen; it must share the student's vocabulary (same ids, same logits width)."""
    loaded = load_model(cfg.distill.teacher, dtype=DTYPE[cfg.distill.teacher_dtype], device=device)
    teacher_vocab, student_vocab = loaded.tokenizer.get_vocab(), tokenizer.get_vocab()
    if teacher_vocab != student_vocab:
        differ = sorted(set(teacher_vocab.items()) ^ set(student_vocab.items()))[:5]
        raise ValueError(f"distill.teacher {cfg.distill.teacher!r} does not share the student's tokenizer "
                         f"({len(teacher_vocab)} vs {len(student_vocab)} tokens; e.g. differing entries {differ}); "
                         f"logit distillation needs the same vocabulary. Use SFT on teacher traces instead "
                         f"(r1lab generate, then r1lab sft without distill.teacher)")
    t_width = loaded.model.get_output_embeddings().weight.shape[0]
    s_width = student.get_output_embeddings().weight.shape[0]
    if t_width != s_width:
        raise ValueError(f"distill.teacher {cfg.distill.teacher!r}: its logits have {t_width} entries, the student's "
                         f"{s_width}; logit distillation needs the same width")
    check_model_forward(loaded.model, cfg.data.pack)
    return loaded.model.eval().requires_grad_(False)


# --- loss and step -----------------------------------------------------------------------------------------------

def batch_loss_sums(cfg: SFTConfig, model, teacher, batch: TokenBatch, device: torch.device
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Summed (loss, ce, kl) over the trained tokens of one micro-batch.

    No attention mask and no cache: transformers then derives a block-diagonal causal mask from the restarting
    ``position_ids`` (see check_model_forward). Only trained positions are projected to the vocabulary.
    """
    ids, pos = batch.input_ids.to(device), batch.position_ids.to(device)  # (R, L)
    targets = batch.targets.to(device)  # (R, L)
    trained = targets != IGNORE  # (R, L), from lengths (sft_data), never from the pad id
    autocast = cfg.model.autocast != "none"
    with torch.autocast(device.type, dtype=DTYPE.get(cfg.model.autocast, torch.bfloat16), enabled=autocast):
        # get_decoder(): the transformer body, also through a PEFT wrapper (whose base_model is the whole model)
        hidden = model.get_decoder()(input_ids=ids, position_ids=pos, use_cache=False).last_hidden_state  # (R, L, H)
        teacher_hidden = teacher_head = None
        if teacher is not None:
            with torch.no_grad():
                teacher_hidden = teacher.base_model(input_ids=ids, position_ids=pos,
                                                    use_cache=False).last_hidden_state[trained]  # (N, Ht)
            teacher_head = teacher.get_output_embeddings()
        d = cfg.distill
        return chunked_sft_loss(hidden[trained], model.get_output_embeddings(), targets[trained], teacher_hidden,
                                teacher_head, d.alpha, d.temperature, d.chunk_tokens)


def _optimize(cfg: SFTConfig, policy, teacher, optimizer, batches: list[TokenBatch], input_tokens: int,
              device: torch.device, dist: DistContext) -> dict:
    """Accumulate gradients over the micro-batches; the loss is the mean over the step's trained tokens of all
    ranks, so the gradient, summed over ranks, is the same whatever the packing, micro-batch size and world size."""
    num_tokens, rows, capacity, input_tokens = all_reduce_sum(dist, [
        sum(b.num_targets for b in batches), sum(b.input_ids.shape[0] for b in batches),
        sum(b.input_ids.numel() for b in batches), input_tokens])  # pack efficiency = example tokens / row tokens
    policy.train()
    optimizer.zero_grad(set_to_none=True)
    sums = {"loss": 0.0, "ce": 0.0, "kl": 0.0}
    sharded, real = is_sharded(policy), len(batches)
    if sharded:  # sharded layers communicate in every forward and backward: each rank runs as many micro-batches
        # as the busiest, the extra ones (a repeat of its first) with zero weight
        batches = batches + batches[:1] * (all_reduce_max(dist, real) - real)
    for j, batch in enumerate(batches):
        loss, ce, kl = batch_loss_sums(cfg, policy, teacher, batch, device)
        if j >= real:
            (loss * 0.0).backward()
            continue
        (loss / num_tokens).backward()
        sums["loss"] += float(loss.detach())
        sums["ce"] += float(ce)
        sums["kl"] += float(kl) if kl is not None else 0.0
    all_reduce_gradients(policy, dist)  # every rank now holds the global gradient, and steps identically
    sums = dict(zip(sums, all_reduce_sum(dist, list(sums.values()))))
    max_norm = cfg.train.max_grad_norm or float("inf")
    grad_norm = (clip_grad_norm(policy, max_norm, dist) if sharded
                 else float(torch.nn.utils.clip_grad_norm_(policy.parameters(), max_norm)))
    skipped = not math.isfinite(grad_norm)
    if skipped:  # non-finite gradient guard: skip the step, count it
        optimizer.zero_grad(set_to_none=True)
    else:
        optimizer.step()
    return {"loss/train": sums["loss"] / num_tokens, "loss/ce": sums["ce"] / num_tokens,
            "loss/kl": sums["kl"] / num_tokens if teacher is not None else None, "train/grad_norm": grad_norm,
            "train/tokens": int(num_tokens), "train/rows": int(rows), "train/pack_efficiency": input_tokens / capacity,
            "skipped": skipped}


# --- evaluation --------------------------------------------------------------------------------------------------

@torch.no_grad()
def held_out_loss(cfg: SFTConfig, model, teacher, examples: list[TokenizedExample], tokenizer,
                  device: torch.device, dist: DistContext | None = None,
                  filler: TokenizedExample | None = None) -> dict:
    """Token-mean cross-entropy (and the training loss, which includes the KL term) on the held-out examples
    (``examples``: this rank's share; the sums are reduced over ranks). A sharded model runs as many forwards on
    every rank: a rank with fewer micro-batches runs ``filler`` (any example) and discards its loss."""
    dist = dist or DistContext()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    was_training = model.training
    model.eval()
    sums, num_tokens = {"loss": 0.0, "ce": 0.0}, 0
    batches = micro_batches(examples, cfg.data.pack, cfg.data.max_length, cfg.train.micro_batch_size, pad_id)
    real = len(batches)
    if is_sharded(model):
        batches += micro_batches([filler], cfg.data.pack, cfg.data.max_length, 1, pad_id) * (
            all_reduce_max(dist, real) - real)
    for j, batch in enumerate(batches):
        loss, ce, _ = batch_loss_sums(cfg, model, teacher, batch, device)
        if j >= real:
            continue
        sums["loss"] += float(loss)
        sums["ce"] += float(ce)
        num_tokens += batch.num_targets
    if was_training:
        model.train()
    sums["loss"], sums["ce"], num_tokens = all_reduce_sum(dist, [sums["loss"], sums["ce"], num_tokens])
    out = {"eval/loss": sums["ce"] / num_tokens}
    if teacher is not None:
        out["eval/distill_loss"] = sums["loss"] / num_tokens
    return out


def _generation_eval(cfg: SFTConfig, engine, task, tokenizer, held_out: list[TokenizedExample], run_dir: Path,
                     step: int, logger: MetricsLogger) -> dict:
    """Greedy accuracy on the task's held-out problems (the GRPO evaluator), and greedy samples of held-out SFT
    prompts next to their reference completions."""
    from r1lab.rollout.base import SamplingParams

    greedy = SamplingParams(0.0, 1.0, 0, cfg.eval.max_new_tokens)
    out = {}
    if task is not None:
        from r1lab.evals.accuracy import evaluate_accuracy
        from r1lab.models.templates import build_prompt
        from r1lab.rewards import RewardContext

        p = cfg.prompt
        ctx = RewardContext(task=task, extraction=tuple(cfg.eval.extraction), tokenizer=tokenizer,
                            max_new_tokens=cfg.eval.max_new_tokens)
        metrics, records = evaluate_accuracy(engine, task.eval, lambda e: build_prompt(e, tokenizer, p.template,
                                                                                       p.system, p.instruction),
                                             ctx, greedy)
        out = {"eval/greedy_accuracy": metrics["accuracy"], "eval/format_rate": metrics["format_rate"],
               "eval/mean_length": metrics["mean_length"]}
        (run_dir / "eval").mkdir(exist_ok=True)
        with (run_dir / "eval" / f"step_{step}.jsonl").open("w") as f:
            f.writelines(json.dumps(r) + "\n" for r in records)
    shown = held_out[: cfg.log.samples_per_step]
    if shown:
        batch = engine.generate([e.prompt_text for e in shown], n=1, sampling=greedy)
        logger.log_samples(step, [{"prompt": e.prompt_text, "completion": text, "reference": e.reference,
                                   "truncated": bool(t)} for e, text, t in zip(shown, batch.texts, batch.truncated)])
    return out


PANELS = (
    ("Loss (token mean)", ("loss/train", "loss/ce", "loss/kl", "eval/loss", "eval/distill_loss")),
    ("Held-out accuracy", ("eval/greedy_accuracy", "eval/format_rate")),
    ("Learning rate", ("lr",)),
    ("Gradient norm", ("train/grad_norm",)),
)
