"""The reward-model loop (``r1lab rm``). Reads top to bottom: pairs -> scores -> Bradley-Terry loss -> step -> log ->
evaluate -> checkpoint; ends with ``final/``, an HF sequence-classification folder the ``reward_model`` reward loads.

A causal LM's backbone gets a fresh one-output linear head on its last token (InstructGPT, arXiv 2203.02155,
section 3.5; DeepSeek-R1, arXiv 2501.12948, section 2.3.4 uses such models for helpfulness and harmlessness).
Each pair is rendered exactly as the reward renders it (``r1lab.rewards.reward_model.encode_pair``: the prompt as
the user turn, the response as the assistant turn), so the scores learned here are the scores GRPO sees.

Pooling: transformers' sequence-classification heads read the rightmost token that is not ``pad_token_id`` (both
padding sides). We pad on the right, so that is the last real token, unless the text itself ends in the pad token
(pad == EOS in many tokenizers); then the token before it is read, the same way here and in the reward.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from r1lab.algos.preference import bradley_terry_loss
from r1lab.data.preferences import PreferencePair, drop_shared_prompts, read_preferences, split_by_prompt
from r1lab.parallel import DistContext, all_reduce_gradients, all_reduce_max, all_reduce_sum, gather_lists, shard_bounds
from r1lab.parallel.sharding import clip_grad_norm, full_state_dict, shard_layers
from r1lab.rewards.reward_model import encode_pair
from r1lab.tasks.sampler import PromptSampler
from r1lab.track.metrics import MetricsLogger, read_jsonl
from r1lab.track.plots import plot_training
from r1lab.track.progress import Progress
from r1lab.train import checkpoint as ckpt
from r1lab.models.lora import save_final, wrap_lora
from r1lab.train.optim import build_optimizer
from r1lab.train.rm_config import RMConfig
from r1lab.train.run_setup import DTYPE, start_run, write_config

# Each pair's encodings: (chosen, rejected), each {"input_ids": [...], "attention_mask": [...]} unpadded.
Encoded = tuple[dict, dict]


@dataclass
class RMResult:
    run_dir: Path
    final_model_dir: Path
    eval_before: dict | None
    eval_after: dict | None
    steps_done: int


def build_reward_model(name: str, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
    """(model, tokenizer): a one-output sequence-classification model whose backbone is the causal LM ``name``.

    The head is new (initialised from the torch seed); every backbone weight must come from the checkpoint.
    ``pad_token_id`` goes into the config so the head pools the last real token and batches can be padded.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from r1lab.models.loading import resolve_model_folder

    folder = resolve_model_folder(name)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"model {name!r}: its tokenizer has neither a pad nor an EOS token to pad with")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    config = AutoConfig.from_pretrained(folder, num_labels=1, pad_token_id=tokenizer.pad_token_id)
    model, info = AutoModelForSequenceClassification.from_pretrained(
        folder, config=config, dtype=dtype, output_loading_info=True)
    head = {name for name, _ in model.named_parameters() if name.startswith("score.")}
    if set(info["missing_keys"]) - head:
        raise RuntimeError(f"model {name!r}: backbone weights missing from {folder}: "
                           f"{sorted(set(info['missing_keys']) - head)}")
    return model.to(device), tokenizer


def freeze_bottom(model, layers: int) -> None:
    """Freeze the embeddings and the first ``layers`` transformer blocks: backward then stops at the first trained
    block, which makes CPU training several times cheaper (partial fine-tuning of the backbone). ``-1`` freezes the
    whole backbone: only the score head trains (a linear probe)."""
    if layers == -1:
        for name, param in model.named_parameters():
            param.requires_grad_(name.startswith("score."))
        return
    if layers <= 0:
        return
    base = getattr(model, model.base_model_prefix, None)
    blocks = getattr(base, "layers", None)
    embed = getattr(base, "embed_tokens", None)
    if blocks is None or embed is None:
        raise ValueError(f"train.freeze_layers: {type(model).__name__} has no .layers / .embed_tokens to freeze; "
                         f"set train.freeze_layers=0")
    if layers > len(blocks):
        raise ValueError(f"train.freeze_layers={layers} but the model has only {len(blocks)} layers")
    embed.requires_grad_(False)
    for block in blocks[:layers]:
        block.requires_grad_(False)


def encode_pairs(tokenizer, pairs: list[PreferencePair], max_length: int) -> tuple[list[PreferencePair], list[Encoded]]:
    """Encodings of the pairs whose two sides fit in ``max_length`` tokens; longer pairs are dropped (cutting
    them would remove the end of the response, the token the head reads)."""
    kept, encoded = [], []
    for pair in pairs:
        chosen = encode_pair(tokenizer, pair.prompt, pair.chosen)
        rejected = encode_pair(tokenizer, pair.prompt, pair.rejected)
        if max(len(chosen["input_ids"]), len(rejected["input_ids"])) <= max_length:
            kept.append(pair)
            encoded.append((chosen, rejected))
    return kept, encoded


def pooled_outputs(model, tokenizer, encodings: list[dict]) -> torch.Tensor:
    """The model's pooled output for each encoding, one right-padded forward pass: (N, num_labels)."""
    device = next(model.parameters()).device
    batch = tokenizer.pad(encodings, padding=True, return_tensors="pt")
    return model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)).logits


def pair_scores(model, tokenizer, encoded: list[Encoded]) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen, rejected) scores, each (P,), both sides of the P pairs in one forward pass."""
    scores = pooled_outputs(model, tokenizer, [c for c, _ in encoded] + [r for _, r in encoded])[:, 0].float()  # (2P,)
    return scores[: len(encoded)], scores[len(encoded):]


def head_features(model, tokenizer, encoded: list[Encoded], batch_size: int, progress: bool = False
                  ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(chosen, rejected) inputs of the score head, each (H,), for a frozen backbone (``freeze_layers=-1``).

    The head is swapped for the identity during transformers' own forward, so the vectors are pooled at exactly
    the token the full model reads; the head being linear, ``score(feature)`` is then the full model's score.
    Computed once: a frozen backbone gives the same features at every step.
    """
    if not isinstance(getattr(model, "score", None), torch.nn.Linear):
        raise ValueError(f"train.freeze_layers=-1 needs a linear .score head; {type(model).__name__} has none")
    head, was_training = model.score, model.training
    model.score = torch.nn.Identity()
    model.eval()
    try:
        flat = [e for pair in encoded for e in pair]  # chosen_0, rejected_0, chosen_1, ...
        order = sorted(range(len(flat)), key=lambda i: len(flat[i]["input_ids"]))  # little padding per batch
        rows: dict[int, torch.Tensor] = {}
        bar = Progress(total=len(flat), enabled=progress, desc="features")
        with torch.no_grad():
            for start in range(0, len(order), 2 * batch_size):
                chunk = order[start : start + 2 * batch_size]
                rows.update(zip(chunk, pooled_outputs(model, tokenizer, [flat[i] for i in chunk])))  # (b, H)
                bar.update(len(rows))
        bar.close()
    finally:
        model.score = head
        model.train(was_training)
    return [(rows[2 * i], rows[2 * i + 1]) for i in range(len(encoded))]


def scorer(model, tokenizer, cached: bool):
    """The function from a list of pair items to (chosen, rejected) scores: items are token encodings, or cached
    head features when the backbone is frozen."""
    if not cached:
        return lambda items: pair_scores(model, tokenizer, items)

    def from_features(items):
        feats = torch.stack([c for c, _ in items] + [r for _, r in items])  # (2P, H)
        scores = model.score(feats)[:, 0].float()  # (2P,)
        return scores[: len(items)], scores[len(items):]

    return from_features


def accumulate_gradients(score_pairs, items: list, micro_batch_size: int, margin: float,
                         total: int | None = None) -> dict[str, float]:
    """Backward pass of the mean Bradley-Terry loss over ``items`` (scored by ``score_pairs``), ``micro_batch_size``
    pairs at a time.

    Each micro-batch's mean is weighted by its share of the pairs (of ``total``, the step's pairs over all ranks,
    default ``len(items)``), so the accumulated gradient (and the returned metrics) are those of the mean over all
    pairs, whatever the micro-batch size and the world size.
    """
    total = total or len(items)
    sums = {"loss": 0.0, "accuracy": 0.0, "margin": 0.0, "chosen": 0.0, "rejected": 0.0}
    for start in range(0, len(items), micro_batch_size):
        chunk = items[start : start + micro_batch_size]
        chosen, rejected = score_pairs(chunk)  # (m,), (m,)
        loss, m = bradley_terry_loss(chosen, rejected, margin)
        weight = len(chunk) / total
        (loss * weight).backward()
        for key in sums:
            sums[key] += m[key] * weight
    return sums


def evaluate(model, score_pairs, pairs: list[PreferencePair], items: list, batch_size: int,
             margin: float, dist: DistContext | None = None) -> tuple[dict[str, float], list[dict]]:
    """Held-out pairwise accuracy, loss and mean margin (overall and per ``category``), and per-pair records.

    Under data parallelism every rank calls it: each scores its contiguous share of the pairs, in as many batches
    as the busiest rank (a sharded model communicates in every forward; the extra batches' scores are dropped),
    and every rank gets all scores back in order."""
    dist = dist or DistContext()
    was_training = model.training
    model.eval()
    lo, hi = shard_bounds(len(items), dist)
    starts = list(range(lo, hi, batch_size))
    chosen, rejected = [], []
    with torch.no_grad():
        for k in range(all_reduce_max(dist, len(starts))):
            c, r = score_pairs(items[starts[k] : min(starts[k] + batch_size, hi)] if k < len(starts) else items[:1])
            if k < len(starts):
                chosen += c.cpu().tolist()
                rejected += r.cpu().tolist()
    model.train(was_training)
    chosen_t = torch.tensor(gather_lists(dist, chosen), dtype=torch.float32)  # (P,)
    rejected_t = torch.tensor(gather_lists(dist, rejected), dtype=torch.float32)  # (P,)
    _, m = bradley_terry_loss(chosen_t, rejected_t, margin)
    metrics = {"eval/loss": m["loss"], "eval/accuracy": m["accuracy"], "eval/margin": m["margin"]}
    categories = sorted({p.meta.get("category") for p in pairs if isinstance(p.meta.get("category"), str)})
    for category in categories:
        rows = torch.tensor([p.meta.get("category") == category for p in pairs])
        _, mc = bradley_terry_loss(chosen_t[rows], rejected_t[rows], margin)
        metrics[f"eval/accuracy/{category}"] = mc["accuracy"]
    records = [{"id": p.id, "category": p.meta.get("category"), "prompt": p.prompt, "chosen": p.chosen,
                "rejected": p.rejected, "chosen_score": float(c), "rejected_score": float(r)}
               for p, c, r in zip(pairs, chosen_t, rejected_t)]
    return metrics, records


def load_split(cfg: RMConfig) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """(train, held_out) pairs; never a prompt on both sides."""
    pairs = read_preferences(cfg.data.path)
    if cfg.data.eval_path:
        held_out = read_preferences(cfg.data.eval_path)
        return drop_shared_prompts(pairs, held_out), held_out
    return split_by_prompt(pairs, cfg.data.eval_fraction, cfg.data.seed)


def train_reward_model(cfg: RMConfig, resume: bool = False) -> RMResult:
    run_dir, final_dir, ckpt_dir, checkpoints, device, dist = start_run(cfg, resume)
    if cfg.train.pairs_per_step % dist.world_size:
        raise ValueError(f"train.pairs_per_step={cfg.train.pairs_per_step} is the global batch and must divide "
                         f"evenly over the {dist.world_size} ranks; use a multiple of {dist.world_size}")
    write_config(run_dir, cfg, dist)

    # --- data, model, optimizer ------------------------------------------------------------------------------
    train_pairs, eval_pairs = load_split(cfg)
    model, tokenizer = build_reward_model(cfg.model.name, DTYPE[cfg.model.dtype], device)
    freeze_bottom(model, cfg.train.freeze_layers)
    if cfg.lora.enabled:  # LoRA (PEFT) on the backbone; the fresh score head trains in full beside it
        if cfg.train.freeze_layers:
            raise ValueError("lora.rank > 0 with train.freeze_layers != 0: LoRA already freezes the backbone; set "
                             "train.freeze_layers=0")
        if cfg.train.parallel == "fsdp" and dist.distributed:
            raise ValueError("lora.rank > 0 with train.parallel=fsdp is not supported; use train.parallel=ddp")
        model = wrap_lora(model, cfg.lora, always_save=["score"])
    model.config.use_cache = False
    n_train, n_eval = len(train_pairs), len(eval_pairs)
    train_pairs, train_enc = encode_pairs(tokenizer, train_pairs, cfg.data.max_length)
    eval_pairs, eval_enc = encode_pairs(tokenizer, eval_pairs, cfg.data.max_length)
    dropped = (n_train - len(train_pairs)) + (n_eval - len(eval_pairs))
    if not train_pairs or not eval_pairs:
        raise ValueError(f"no {'training' if not train_pairs else 'held-out'} pairs fit in data.max_length="
                         f"{cfg.data.max_length} tokens; raise it")
    if dist.is_main:
        print(f"preference pairs: {len(train_pairs)} train, {len(eval_pairs)} held out"
              + (f" ({dropped} longer than data.max_length dropped)" if dropped else ""))
    cached = cfg.train.freeze_layers == -1
    if cached:  # a frozen backbone: its features, computed once, stand in for the token encodings
        train_enc = head_features(model, tokenizer, train_enc, cfg.eval.batch_size, cfg.log.progress)
        eval_enc = head_features(model, tokenizer, eval_enc, cfg.eval.batch_size, cfg.log.progress)
    score_pairs = scorer(model, tokenizer, cached)
    # FSDP: each decoder layer sharded over the ranks (the score head stays whole, like an LM head); every rank
    # has the same number of pairs per step, so their micro-batches (and the layers' gathers) match one to one
    sharded = cfg.train.parallel == "fsdp" and dist.distributed
    if sharded:  # before the optimizer, which then holds (and steps) only this rank's shards
        shard_layers(model)
    sampler = PromptSampler(len(train_pairs), seed=cfg.train.seed)
    optimizer, scheduler = build_optimizer(
        model, cfg.train.lr, cfg.train.weight_decay, (cfg.train.adam_beta1, cfg.train.adam_beta2), cfg.train.steps,
        cfg.train.warmup_steps, cfg.train.schedule, cfg.train.min_lr_ratio, cfg.model.low_precision_update,
        cfg.train.seed)

    start_step, counters = 0, {"skipped_steps": 0, "train_seconds": 0.0}
    if resume and checkpoints:
        state = ckpt.load_checkpoint(checkpoints[-1], model, optimizer, scheduler)
        sampler.load_state_dict(state["sampler"])
        start_step, counters = state["step"], state["counters"]
        print(f"resumed from {checkpoints[-1]} (step {start_step} of {cfg.train.steps})")
    # the held-out pairs are scored over all ranks and gathered; rank 0 logs and writes
    logger = MetricsLogger(run_dir, resume_step=start_step, tensorboard=cfg.log.tensorboard) if dist.is_main else None
    if dist.is_main:
        (run_dir / "eval").mkdir(exist_ok=True)

    def run_eval(step: int) -> dict:
        metrics, records = evaluate(model, score_pairs, eval_pairs, eval_enc, cfg.eval.batch_size, cfg.train.margin,
                                    dist)
        if dist.is_main:
            with (run_dir / "eval" / f"step_{step}.jsonl").open("w") as f:
                f.writelines(json.dumps(r) + "\n" for r in records)
        return metrics

    if cfg.eval.every and start_step == 0:
        before = run_eval(0)
        if logger:
            logger.log(0, before)

    # --- the loop ----------------------------------------------------------------------------------------------
    progress = Progress(total=cfg.train.steps, initial=start_step, enabled=cfg.log.progress and dist.is_main, desc="rm")
    per_rank = cfg.train.pairs_per_step // dist.world_size
    first = dist.rank * per_rank  # this rank's pairs: [first, first + per_rank) of each step's global batch
    model.train()
    step = start_step
    for step in range(start_step + 1, cfg.train.steps + 1):
        t0 = time.monotonic()
        # 1-3. scores, loss and gradients of this step's pairs
        optimizer.zero_grad(set_to_none=True)
        batch = [train_enc[i] for i in sampler.next_indices(cfg.train.pairs_per_step)][first : first + per_rank]
        sums = accumulate_gradients(score_pairs, batch, cfg.train.micro_batch_size, cfg.train.margin,
                                    total=cfg.train.pairs_per_step)
        all_reduce_gradients(model, dist)  # every rank now holds the global gradient, and steps identically
        sums = dict(zip(sums, all_reduce_sum(dist, list(sums.values()))))

        # 4. optimizer step (skipped, and counted, when the gradient is not finite)
        max_norm = cfg.train.max_grad_norm or float("inf")
        grad_norm = (clip_grad_norm(model, max_norm, dist) if sharded
                     else float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)))
        if math.isfinite(grad_norm):
            optimizer.step()
        else:
            counters["skipped_steps"] += 1
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()

        # 5. log, evaluate
        step_seconds = time.monotonic() - t0
        counters["train_seconds"] += step_seconds
        metrics = {f"train/{k}": v for k, v in sums.items()}
        metrics.update({"train/grad_norm": grad_norm, "lr": scheduler.get_last_lr()[0], "time/step_s": step_seconds,
                        "time/train_total_s": counters["train_seconds"],
                        "counters/skipped_steps": counters["skipped_steps"]})
        limit_s = cfg.train.time_limit_minutes * 60
        last = step == cfg.train.steps or (limit_s > 0 and counters["train_seconds"] >= limit_s)
        if cfg.eval.every and (step % cfg.eval.every == 0 or last):
            metrics.update(run_eval(step))
        if logger:
            logger.log(step, metrics)
        progress.update(step, {"loss": metrics["train/loss"], "acc": metrics["train/accuracy"],
                               "eval_acc": metrics.get("eval/accuracy")})

        # 6. checkpoint
        if (cfg.log.checkpoint_every and step % cfg.log.checkpoint_every == 0) or last:
            ckpt.save_checkpoint(ckpt_dir, step, model, optimizer, scheduler,
                                 {"sampler": sampler.state_dict(), "counters": counters}, keep=cfg.log.keep_checkpoints,
                                 dist=dist)
        if last:
            break
    progress.close()
    final_weights = full_state_dict(model) if sharded else None  # a collective: every rank, before rank 0 writes
    if not dist.is_main:  # rank 0 writes final/, the summary and the plot; the others are done
        return RMResult(run_dir=run_dir, final_model_dir=final_dir, eval_before=None, eval_after=None, steps_done=step)
    logger.close()

    # --- outputs: final HF folder, summary, plot ---------------------------------------------------------------
    if step < cfg.train.steps:
        print(f"stopped at step {step} of {cfg.train.steps}: train.time_limit_minutes={cfg.train.time_limit_minutes} "
              f"reached")
    if cfg.lora.enabled:  # the merged model (plain HF) in final/, the adapter and the head in final/adapter
        save_final(model, tokenizer, final_dir)
    else:
        model.config.use_cache = True
        model.save_pretrained(final_dir, safe_serialization=True, state_dict=final_weights)
        tokenizer.save_pretrained(final_dir)
    records = read_jsonl(run_dir / "metrics.jsonl")
    plot_training(records, run_dir / "training.png", title=f"Reward model from {cfg.model.name} on {cfg.data.path}",
                  panels=PANELS, columns=3)
    evals = [r for r in records if "eval/accuracy" in r]
    result = RMResult(run_dir=run_dir, final_model_dir=final_dir, eval_before=evals[0] if evals else None,
                      eval_after=evals[-1] if len(evals) > 1 else None, steps_done=step)
    summary = {"steps_done": step, "train_pairs": len(train_pairs), "eval_pairs": len(eval_pairs),
               "dropped_pairs": dropped, "eval_before": result.eval_before, "eval_after": result.eval_after,
               "final_model": str(final_dir), "train_seconds": counters["train_seconds"]}
    (run_dir / "results.json").write_text(json.dumps(summary, indent=2))
    return result


PANELS = (("Bradley-Terry loss", ("train/loss", "eval/loss")),
          ("Pairwise accuracy", ("train/accuracy", "eval/accuracy")),
          ("Reward margin (chosen - rejected)", ("train/margin", "eval/margin")))
