"""``r1lab generate``: k teacher samples per prompt, appended to a JSONL file of trace rows (resumable).

The R1 report distils by SFT on ~800K teacher samples; Sky-T1 on 17K. This job writes such samples in the trace
row format (id, prompt, completion, answer, sample, teacher, usage, finish_reason, meta; see
docs/distillation.md). Each row is written and flushed as soon as the teacher returns it, so a kill loses at
most the requests in flight; a re-run skips the (id, sample) pairs already in the file, and a last line cut by a
kill is dropped. Token usage and cost (``teacher.price_input`` / ``price_output`` USD per million tokens) are
recorded per row (``meta.cost_usd``) and summed in ``PATH.summary.json``.

Under torchrun / srun the ranks share the work: the teacher's blocks of requests (for a local model, its engine
calls) are dealt to the ranks in rounds, each block generated exactly as one process generates it, and rank 0
alone writes each round's rows in block order, flushed: a kill loses at most one round.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
import zlib
from pathlib import Path
from typing import Iterator

from r1lab.data.teachers import Teacher, TeacherError, TeacherPrompt, TeacherRequest, TeacherSampling, make_teacher
from r1lab.parallel import DistContext, all_gather_objects, broadcast_object, init_distributed
from r1lab.types import Example


class TraceFileError(ValueError):
    """A broken trace file; the message names the file, the line and the problem."""


def summary_path(output: str | Path) -> Path:
    return Path(f"{output}.summary.json")


def cost_usd(prompt_tokens: int, completion_tokens: int, price_input: float, price_output: float) -> float:
    """Cost of one request at prices in USD per million input / output tokens."""
    return (prompt_tokens * price_input + completion_tokens * price_output) / 1e6


def scan_output(path: Path) -> tuple[set[tuple[str, int]], dict]:
    """(id, sample) pairs already in ``path`` and their totals. A last line without its newline that is not valid
    JSON is the row a kill interrupted: it is cut off the file (and will be generated again). A broken line
    elsewhere is a TraceFileError naming file and line."""
    done: set[tuple[str, int]] = set()
    totals = {"rows": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}
    if not path.exists():
        return done, totals
    data = path.read_bytes()
    lines = data.split(b"\n")
    offset, cut = 0, False
    for lineno, raw in enumerate(lines, start=1):
        last = lineno == len(lines)
        if raw.strip():
            try:
                row = json.loads(raw.decode("utf-8-sig"))  # a hand-made file may start with a BOM
                key = (row["id"], int(row["sample"]))
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as err:
                if last:  # cut by a kill mid-write: drop it
                    with open(path, "r+b") as f:
                        f.truncate(offset)
                    cut = True
                    print(f"note: {path}:{lineno}: dropped an incomplete last line (an interrupted write)",
                          file=sys.stderr)
                    break
                raise TraceFileError(f"{path}:{lineno}: not a trace row ({err!r}); fix or remove that line") from None
            done.add(key)
            usage = row.get("usage") or {}
            totals["rows"] += 1
            totals["prompt_tokens"] += int(usage.get("prompt_tokens", 0))
            totals["completion_tokens"] += int(usage.get("completion_tokens", 0))
            totals["cost_usd"] += float((row.get("meta") or {}).get("cost_usd", 0.0))
        offset += len(raw) + 1
    if data and not data.endswith(b"\n") and not cut:
        with open(path, "ab") as f:  # a complete last row missing only its newline
            f.write(b"\n")
    return done, totals


def sample_seed(seed: int, example_id: str, sample: int) -> int:
    """A stable 31-bit seed per (run seed, prompt, sample): the same on a resumed run."""
    return zlib.crc32(f"{seed}:{example_id}:{sample}".encode()) & 0x7FFFFFFF


def build_teacher(cfg, device: str | None = None) -> Teacher:
    """The teacher a GenerateConfig describes; ``device`` replaces ``teacher.device`` (a rank's own GPU)."""
    t, p, s = cfg.teacher, cfg.prompt, cfg.sampling
    return make_teacher(
        t.name, url=t.url, prompt=TeacherPrompt(p.template, p.system, p.instruction),
        sampling=TeacherSampling(s.temperature, s.top_p, s.max_new_tokens),
        fmt=t.format, error_rate=t.error_rate, seed=s.seed, api=t.api, api_key_env=t.api_key_env,
        concurrency=t.concurrency, max_retries=t.max_retries, backoff_s=t.backoff_s, timeout_s=t.timeout_s,
        dtype=t.dtype, device=device or t.device, batch_size=t.batch_size,
    )


def fit_local_prompts(examples: list[Example], teacher: Teacher, cfg) -> list[Example]:
    """A local model teacher's prompts checked against ``sampling.max_prompt_tokens`` (r1lab.tasks.prompt_limits).
    Program teachers read no prompt, and an endpoint's server applies its own model's limit."""
    from r1lab.tasks.prompt_limits import fit_examples, prompt_limit

    tokenizer, engine = getattr(teacher, "tokenizer", None), getattr(teacher, "engine", None)
    if tokenizer is None or engine is None:
        return examples
    limit = prompt_limit(cfg.sampling.max_prompt_tokens, "sampling.max_prompt_tokens", engine.model.config,
                         cfg.sampling.max_new_tokens)
    what = "training" if cfg.output.split == "train" else "held-out"
    return fit_examples(examples, [[teacher.render(e)] for e in examples], tokenizer, limit, cfg.task.overlong_prompts,
                        what)


# A rank waits for the others' block at the end of each round: the timeout bounds one block's generation.
COLLECTIVE_TIMEOUT_MINUTES = 60.0


def teacher_device(cfg) -> str:
    """The device a local model teacher generates on; program and endpoint teachers use the CPU (and gloo)."""
    from r1lab.train.run_setup import resolve_device

    local = not cfg.teacher.url and not cfg.teacher.name.startswith("program:")
    return str(resolve_device(cfg.teacher.device)) if local else "cpu"


def request_blocks(teacher: Teacher, requests: list[TeacherRequest]) -> list[list[TeacherRequest]]:
    """The teacher's work units (``Teacher.blocks``); a teacher without them gets blocks of PROGRAM_BLOCK."""
    from r1lab.data.teachers import PROGRAM_BLOCK, consecutive

    blocks = getattr(teacher, "blocks", None)
    return blocks(requests) if blocks is not None else consecutive(requests, PROGRAM_BLOCK)


def streamed_rows(teacher: Teacher, requests: list[TeacherRequest], make_row) -> Iterator[dict]:
    """One process: each row as soon as the teacher returns it."""
    for req, reply in teacher.generate(requests):
        yield make_row(req, reply)


def rows_in_rounds(teacher: Teacher, blocks: list[list[TeacherRequest]], make_row, dist: DistContext) -> Iterator[dict]:
    """Data-parallel: block r * W + k goes to rank k in round r; after each round every rank has the round's rows
    in block order (rank order), which is the order one process writes them in. A teacher failure on any rank
    ends the job on every rank after its round's finished rows are yielded."""
    W = dist.world_size
    for first in range(0, len(blocks), W):
        mine, rows, error = first + dist.rank, [], None
        if mine < len(blocks):
            try:
                for req, reply in teacher.generate(blocks[mine]):
                    rows.append(make_row(req, reply))
            except TeacherError as err:  # its finished rows are still written
                error = str(err) or type(err).__name__
        gathered = all_gather_objects(dist, (rows, error))
        for part, _ in gathered:
            yield from part
        errors = [e for _, e in gathered if e is not None]
        if errors:
            raise TeacherError(errors[0])


def count_row(run: dict, row: dict) -> None:
    """Add one written row to the run's totals."""
    usage = row["usage"]
    run["rows"] += 1
    run["prompt_tokens"] += usage["prompt_tokens"]
    run["completion_tokens"] += usage["completion_tokens"]
    run["cost_usd"] += row["meta"]["cost_usd"]
    run["truncated"] += row["finish_reason"] == "length"
    run["mistakes"] += bool(row["meta"].get("mistake"))


def run_generate(cfg, teacher: Teacher | None = None) -> dict:
    """Generate the missing samples of ``cfg`` and return the summary (also written to PATH.summary.json).

    A teacher failure (an endpoint after its retries) leaves every finished row in the file, writes the summary
    with the error, and re-raises. Under torchrun / srun the teacher's blocks are dealt to the ranks in rounds
    (``rows_in_rounds``); rank 0 alone reads and writes the file, so the rows and their order are one process's
    (program and local model teachers; an endpoint's rows are the same set, each block in completion order).
    """
    import torch

    from r1lab.tasks import load_task_config
    from r1lab.track.progress import Progress

    dist, device = init_distributed(torch.device(teacher_device(cfg)), COLLECTIVE_TIMEOUT_MINUTES)
    task = load_task_config(cfg.task)
    examples = task.train if cfg.output.split == "train" else task.eval
    if cfg.output.num_prompts:
        examples = examples[: cfg.output.num_prompts]
    if teacher is None:
        teacher = build_teacher(cfg, str(device))
    examples = fit_local_prompts(examples, teacher, cfg)  # before any generation
    path = Path(cfg.output.path)
    if dist.is_main:  # one reader: scan_output may cut a torn last line
        path.parent.mkdir(parents=True, exist_ok=True)
    done, before = broadcast_object(dist, scan_output(path) if dist.is_main else None)
    k, seed = cfg.sampling.k, cfg.sampling.seed
    requests = [TeacherRequest(e, s, sample_seed(seed, e.id, s)) for e in examples for s in range(k)
                if (e.id, s) not in done]
    skipped = len(examples) * k - len(requests)
    price_in, price_out = cfg.teacher.price_input, cfg.teacher.price_output

    def make_row(req: TeacherRequest, reply) -> dict:
        return trace_row(req, reply, teacher.name, cfg, cost_usd(reply.prompt_tokens, reply.completion_tokens,
                                                                 price_in, price_out))

    rows = (rows_in_rounds(teacher, request_blocks(teacher, requests), make_row, dist) if dist.distributed
            else streamed_rows(teacher, requests, make_row))
    run = {"rows": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0, "truncated": 0, "mistakes": 0}
    progress = Progress(total=len(examples) * k, initial=skipped,
                        enabled=cfg.output.progress and bool(requests) and dist.is_main, desc="generate")
    started, error = time.perf_counter(), None
    try:
        with open(path, "a", encoding="utf-8") if dist.is_main else contextlib.nullcontext() as out:
            for row in rows:
                if out is not None:
                    out.write(json.dumps(row, ensure_ascii=False) + "\n")
                    out.flush()  # a kill loses at most the requests in flight (data-parallel: one round)
                count_row(run, row)
                progress.update(skipped + run["rows"])
    except (TeacherError, KeyboardInterrupt) as err:
        error = err
    finally:
        progress.close()
        teacher.close()
    elapsed = time.perf_counter() - started
    summary = {
        "output": str(path), "teacher": teacher.name,
        "teacher_dtype": getattr(teacher, "dtype", None),  # a local model's resolved dtype (teacher.dtype may be auto)
        "task": cfg.task.name, "split": cfg.output.split,
        "prompts": len(examples), "k": k, "rows_expected": len(examples) * k, "rows_skipped": skipped,
        "rows_written": run["rows"], "rows_in_file": before["rows"] + run["rows"], "world_size": dist.world_size,
        "prices_per_million": {"input": price_in, "output": price_out},
        "run": {**run, "elapsed_s": round(elapsed, 3), "rows_per_s": run["rows"] / elapsed if elapsed > 0 else None},
        "file": {key: before[key] + run[key] for key in ("prompt_tokens", "completion_tokens", "cost_usd")},
        "error": None if error is None else str(error) or type(error).__name__,
    }
    if dist.is_main:
        summary_path(path).write_text(json.dumps(summary, indent=2) + "\n")
    if error is not None:
        raise error
    return summary


def trace_row(req: TeacherRequest, reply, teacher_name: str, cfg, cost: float) -> dict:
    """One row in the trace format; ``prompt`` is the bare question (the student's template is applied later)."""
    meta = {"task": cfg.task.name, "temperature": cfg.sampling.temperature, "latency_s": round(reply.latency_s, 4),
            "cost_usd": cost, **reply.meta}
    return {
        "id": req.example.id, "prompt": req.example.question, "completion": reply.completion,
        "answer": req.example.answer, "sample": req.sample, "teacher": teacher_name,
        "usage": {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens},
        "finish_reason": reply.finish_reason, "meta": meta,
    }


def format_summary(summary: dict) -> str:
    """A few lines for the terminal."""
    run, file = summary["run"], summary["file"]
    lines = [
        f"{summary['output']}: {summary['rows_written']} rows written, {summary['rows_skipped']} already there "
        f"({summary['rows_in_file']} in the file; {summary['prompts']} prompts x k={summary['k']})",
        f"tokens this run: {run['prompt_tokens']} in, {run['completion_tokens']} out; cost ${run['cost_usd']:.6f} "
        f"(file: ${file['cost_usd']:.6f}) at ${summary['prices_per_million']['input']} / "
        f"${summary['prices_per_million']['output']} per million tokens",
        f"{run['truncated']} cut at max_new_tokens; {run['elapsed_s']:.1f} s"
        + (f" ({run['rows_per_s']:.1f} rows/s)" if run["rows_per_s"] else ""),
    ]
    if run["mistakes"]:
        lines.append(f"{run['mistakes']} traces with an injected mistake (teacher.error_rate)")
    return "\n".join(lines)
