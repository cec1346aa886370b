"""The training configuration: one pydantic model, written to ``config.json`` of every run.

Defaults follow the papers' common ground for frozen patch features (Adam, lr 2e-4, weight decay
1e-5, batch of one bag, early stopping on the validation loss) but with CPU-friendly epoch
counts; every field is recorded so a run can be reproduced from its folder alone.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class TrainConfig(BaseModel):
    """Everything that decides the outcome of ``train`` (besides the data)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    task: Literal["classification", "survival"] = "classification"
    model: str = "abmil"
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    encoder: str | None = None

    survival_loss: Literal["cox", "nll"] = "cox"
    n_bins: int = Field(4, ge=2, description="time bins of the discrete-time NLL")
    nll_head: Literal["shared", "per_bin"] = Field(
        "shared",
        description="NLL outputs: one risk added to life-table baseline hazards, or one per bin",
    )
    nll_alpha: float = Field(0.0, ge=0.0, le=1.0, description="weight of the uncensored term")

    folds: int = Field(5, ge=2)
    val_fraction: float = Field(0.2, ge=0.0, lt=1.0, description="of the training patients")
    seed: int = 0

    epochs: int = Field(50, ge=1)
    patience: int = Field(10, ge=1)
    min_epochs: int = Field(0, ge=0, description="no early stop before this many epochs")
    monitor: Literal["loss", "metric"] = "loss"
    optimizer: Literal["adam", "adamw"] = "adam"
    lr: float = Field(2e-4, gt=0)
    weight_decay: float = Field(1e-5, ge=0)
    batch_size: int | None = Field(
        None, ge=1, description="bags per step (padded); default 1, or 32 for Cox"
    )
    max_tiles: int | None = Field(None, ge=1, description="tiles sampled per bag in training")
    balance: Literal["weights", "sampler", "none"] = "weights"
    instance_loss_weight: float | None = Field(
        None, ge=0.0, le=1.0, description="auxiliary loss share; default: the model's own"
    )
    cache: bool = True
    deterministic: bool = True

    labels_path: str | None = None
    stores: str | None = None

    @model_validator(mode="after")
    def _cox_needs_batches(self) -> TrainConfig:
        if self.is_cox and self.batch_size is not None and self.batch_size < 2:
            raise ValueError("the Cox loss compares bags within a batch: batch_size must be >= 2")
        return self

    @property
    def is_cox(self) -> bool:
        return self.task == "survival" and self.survival_loss == "cox"

    @property
    def effective_batch_size(self) -> int:
        if self.batch_size is not None:
            return self.batch_size
        return 32 if self.is_cox else 1
