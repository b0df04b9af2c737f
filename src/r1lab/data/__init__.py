"""Distillation data: teachers that write traces (``r1lab generate``), rejection sampling and readability filters
(``r1lab filter``), journey-learning traces (``r1lab journey``) and SFT datasets. Light on purpose: every heavy
import (torch, transformers, reasoning-gym) happens inside the module that needs it."""
