"""Algorithm math as pure functions, registered by name (advantages, KL estimators, loss aggregations)."""

from r1lab.algos.advantages import ADVANTAGES
from r1lab.algos.losses import KL_ESTIMATORS, LOSS_AGGREGATIONS, aggregate, clipped_policy_loss

__all__ = ["ADVANTAGES", "KL_ESTIMATORS", "LOSS_AGGREGATIONS", "aggregate", "clipped_policy_loss"]
