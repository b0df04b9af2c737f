"""Multi-stage runs (the DeepSeek-R1 recipe as one resumable job): ``r1lab pipeline CONFIG.yaml``."""

from r1lab.pipeline.config import KINDS, PipelineConfig, load_pipeline, parse_pipeline
from r1lab.pipeline.runner import PipelineError, run_pipeline

__all__ = ["KINDS", "PipelineConfig", "PipelineError", "load_pipeline", "parse_pipeline", "run_pipeline"]
