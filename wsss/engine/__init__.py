"""Training engine shared by every trainable stage (see CONTRIBUTING.md, "Training engine").

    from wsss.engine import Trainer, TaskModule, param_groups_4
    Trainer(cfg, task, train_dataset, exp_dir).fit(resume=True)
"""

from .checkpoint import load_checkpoint, load_weights, save_checkpoint
from .distributed import (all_gather_grad, barrier, get_rank, get_world_size, global_max, init_distributed, is_main,
                          resolve_device, shard)
from .frozen import frozen_call
from .module import StepContext, TaskModule
from .networks import check_experiment, load_network
from .options import Option, declared_options, format_options, resolve_options
from .optim import OPTIMIZERS, build_optimizer, param_groups_4, poly_factor, set_poly_lr
from .seed import seed_everything, worker_init_fn
from .trainer import TRAIN_DEFAULTS, Trainer, to_device

__all__ = [
    "Trainer", "TaskModule", "StepContext", "TRAIN_DEFAULTS", "param_groups_4", "poly_factor", "set_poly_lr",
    "build_optimizer", "OPTIMIZERS", "frozen_call", "shard", "seed_everything", "worker_init_fn",
    "init_distributed", "resolve_device", "get_rank", "get_world_size", "is_main", "barrier", "all_gather_grad",
    "global_max", "save_checkpoint", "load_checkpoint", "load_weights", "to_device", "check_experiment",
    "load_network", "Option", "declared_options", "format_options", "resolve_options",
]
