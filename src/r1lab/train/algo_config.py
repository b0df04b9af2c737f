"""The ``algo`` and ``critic`` sections of ``r1lab grpo`` / ``r1lab zero``: which advantage, which policy loss, where
the KL goes, dynamic sampling, and PPO's value model. Beside its job (``r1lab.train.grpo``), in the style of
``r1lab.config``; imports nothing heavy, so ``--help`` stays fast.

``r1lab.config`` imports this module as a module object (``import ... as algo_config``), so either may be imported
first."""

from __future__ import annotations

from dataclasses import dataclass

from r1lab.config import option, require

ADVANTAGE_NAMES = ("grpo", "dr_grpo", "rloo", "reinforce_pp", "gae")
LOSS_NAMES = ("ppo_clip", "gspo", "cispo", "sapo")


@dataclass
class AlgoConfig:
    advantage: str = option("grpo", "advantage estimator (r1lab.algos.advantages): grpo, dr_grpo and rloo are "
                                    "group-relative; reinforce_pp = REINFORCE++ (return normalised over the whole "
                                    "global batch); gae = PPO with a value model (the critic section)",
                            ADVANTAGE_NAMES)
    loss: str = option("ppo_clip", "policy loss (r1lab.algos.policy_losses): ppo_clip = PPO/GRPO clipped token "
                                   "ratio; gspo = sequence-level length-normalised ratio, clipped per sequence (GSPO; "
                                   "the paper clips at 3e-4 / 4e-4); cispo = clipped ratio as a stop-gradient weight "
                                   "on every token's log-prob (MiniMax-M1); sapo = smooth sigmoid gate (Qwen SAPO)",
                       LOSS_NAMES)
    sapo_tau_pos: float = option(1.0, "SAPO gate temperature for tokens with positive advantage")
    sapo_tau_neg: float = option(1.05, "SAPO gate temperature for tokens with negative advantage (faster decay)")
    kl_in: str = option("loss", "where the beta-weighted KL to the reference goes: loss = a loss term with "
                                "kl_estimator (GRPO); reward = -beta * k1 per token, summed to-go into each "
                                "token's advantage (InstructGPT, REINFORCE++)", ("loss", "reward"))
    dynamic_sampling: bool = option(False, "DAPO dynamic sampling: drop groups whose rewards are all equal and draw "
                                           "more prompts until prompts_per_step informative groups (or the cap)")
    dynamic_sampling_max_rounds: int = option(3, "generation rounds per step with dynamic_sampling (the first "
                                                 "included); the step trains on what it has after the last")
    rollout_correction: str = option("tis", "correction of the rollout engine / trainer mismatch "
                                            "(r1lab.algos.rollout_correction): tis = weight each token's policy "
                                            "gradient by min(pi_train / pi_rollout, cap); icepop = drop tokens whose "
                                            "ratio leaves [1/cap, cap]; none = trust the engine",
                                     ("none", "tis", "icepop"))
    rollout_correction_cap: float = option(2.0, "the cap C of rollout_correction (verl and TRL use 2-3)")
    loss_aggregation: str = option("token_mean", "how the (B, T) loss becomes a scalar (gspo: seq_mean_token_mean "
                                                 "is the paper's)",
                                   ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"))
    clip_low: float = option(0.2, "PPO clip: ratio lower bound is 1 - clip_low (also gspo's and cispo's)")
    clip_high: float = option(0.2, "PPO clip: ratio upper bound is 1 + clip_high (DAPO clip-higher: 0.28)")
    beta: float = option(0.0, "KL penalty weight; 0 loads no reference model")
    kl_estimator: str = option("k3", "KL estimator (Schulman) of kl_in=loss: k1, k2 or k3", ("k1", "k2", "k3"))
    num_iterations: int = option(1, "optimizer passes over each rollout batch (mu in GRPO); >1 uses importance ratios")
    mask_truncated: bool = option(False, "exclude completions that hit max_new_tokens from the loss (DAPO)")
    skip_zero_advantage: bool = option(True, "skip the forward pass of samples with zero advantage when beta=0 "
                                             "(exact: their gradient is zero; loss denominators still count them)")

    def check(self) -> None:
        require(self.clip_low >= 0 and self.clip_high >= 0, "clip_low", "clip bounds must be >= 0")
        require(self.beta >= 0, "beta", "must be >= 0")
        require(self.num_iterations >= 1, "num_iterations", "must be >= 1")
        require(self.rollout_correction_cap > 1, "rollout_correction_cap", "must be > 1")
        require(self.sapo_tau_pos > 0 and self.sapo_tau_neg > 0, "sapo_tau_pos", "SAPO temperatures must be > 0")
        require(self.dynamic_sampling_max_rounds >= 1, "dynamic_sampling_max_rounds", "must be >= 1")
        require(not (self.kl_in == "reward" and self.beta == 0), "kl_in",
                "kl_in=reward needs algo.beta > 0 (the weight of the per-token KL reward)")
        per_token = self.advantage == "gae" or self.kl_in == "reward"
        require(not (self.loss == "gspo" and per_token), "loss",
                "gspo weighs whole sequences by one advantage; use it with a sequence advantage (not "
                "advantage=gae, not kl_in=reward)")


@dataclass
class CriticConfig:
    model: str = option("", "the value model's backbone (HF folder, .gguf, cached hub id or smollm2-135m) with a "
                            "fresh one-output value head; empty = the policy's model.name. Used by algo.advantage=gae")
    lr: float = option(1e-5, "critic learning rate (AdamW, constant)")
    gamma: float = option(1.0, "GAE discount over completion tokens")
    lam: float = option(0.95, "GAE lambda (1 = Monte-Carlo return minus the value, 0 = one-step TD)")
    value_clip: float = option(0.2, "PPO value clipping: the new value stays within +-value_clip of the rollout "
                                    "value in the clipped term (0 = off)")
    warmup_steps: int = option(0, "first steps that train only the critic (the policy is not updated), so the "
                                  "advantages start from a fitted value")
    epochs: int = option(1, "critic optimizer passes over each batch")
    max_grad_norm: float = option(1.0, "critic gradient clipping threshold (0 = off)")

    def check(self) -> None:
        require(self.lr > 0, "lr", "must be > 0")
        require(0 <= self.gamma <= 1, "gamma", "must be in [0, 1]")
        require(0 <= self.lam <= 1, "lam", "must be in [0, 1]")
        require(self.value_clip >= 0, "value_clip", "must be >= 0")
        require(self.warmup_steps >= 0, "warmup_steps", "must be >= 0")
        require(self.epochs >= 1, "epochs", "must be >= 1")
