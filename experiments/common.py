"""The config schema every experiment starts from. Durations and the learning rate are resolved at run time
(``Schedule.resolve``): the config holds ``base_lr`` per 256 examples and epochs or steps, never derived values."""

import ml_collections
from ml_collections import config_dict


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    # Any extra key under `model` is passed to cnn_jax.create_model as an override.
    c.model = ml_collections.ConfigDict({"name": "resnet50", "dtype": "float32"})
    c.data = ml_collections.ConfigDict({
        "name": "fashion_mnist",
        "data_dir": config_dict.placeholder(str),
        "image_size": 32,
        "augment": "none",
        "max_train_examples": config_dict.placeholder(int),  # subsets, for smoke tests
        "max_eval_examples": config_dict.placeholder(int),
    })
    c.train = ml_collections.ConfigDict({
        "global_batch": 128,
        "eval_batch": 500,
        "epochs": 1.0,
        "num_steps": config_dict.placeholder(int),  # overrides epochs when set
        # Stop this invocation after this many steps (time-limited cluster slots); a relaunch resumes.
        "stop_after_steps": config_dict.placeholder(int),
        "eval_every_epochs": 1.0,
        "log_every_steps": 50,
        "checkpoint_every_steps": 500,
        "keep_checkpoints": 3,
    })
    c.optimizer = ml_collections.ConfigDict({
        "name": "sgd",
        "base_lr": 0.1,  # per 256 examples: lr = base_lr * global_batch / 256
        "momentum": 0.9,
        "nesterov": False,
        "weight_decay": 1e-4,
        "decay_all_params": False,  # False: no decay on BatchNorm parameters and biases
        "schedule": "cosine",
        "warmup_epochs": 0.0,
        "decay_epochs": (30, 60, 80),
        "decay_factor": 0.1,
        "decay_every_epochs": 2.4,
        "rmsprop_decay": 0.9,
        "eps": 1e-3,
    })
    c.loss = ml_collections.ConfigDict({
        "label_smoothing": 0.0,
        "aux_weight": 0.3,  # per auxiliary head (GoogLeNet paper Sec. 5)
        "aux_weights": ml_collections.ConfigDict(),  # per-head overrides by name
    })
    return c
