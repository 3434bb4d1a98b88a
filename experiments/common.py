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
        # A TFDS name (imagenet2012, cifar10, fashion_mnist, ...), "folder:ROOT" or "synthetic[:HxWxC...]".
        "name": "fashion_mnist",
        "data_dir": config_dict.placeholder(str),  # TFDS data directory (default $TFDS_DATA_DIR, ~/tensorflow_datasets)
        "manual_dir": config_dict.placeholder(str),  # manually downloaded files (Fashion-MNIST IDX default: Debian's)
        "train_split": config_dict.placeholder(str),  # default: the dataset's ("train"); TFDS slicing works
        "eval_split": config_dict.placeholder(str),  # default: the dataset's ("test" / "validation" / "val")
        "image_size": 32,
        # cnn_jax.data.transforms specs, e.g. "random_resized_crop,flip" / "pad_crop(4),flip" / "none".
        "train_transform": "none",
        "eval_transform": "none",  # "resize_center_crop" (crop fraction from the model's metadata) or "none"
        "interpolation": "bicubic",  # PIL filter of the train and eval resizes (train op resize, eval specs)
        "batch_transform": "none",  # "mixup(0.2)", "cutmix(1.0)", "mixup(0.8)|cutmix(1.0)"
        "num_threads": config_dict.placeholder(int),  # host threads for decoding/transforms (default: all CPUs)
        "worker_processes": 0,  # > 0: training batches built in this many processes (ImageNet-scale augmentation)
        "dtype": "float32",  # images as delivered to the devices: float32 or bfloat16
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
        # Seconds one asynchronous save (writes and cross-process barriers) may take before it fails: with several
        # processes, how long the others wait for one whose save failed or that died. 0: 120 s with several
        # processes, 1200 s (orbax's default) with one.
        "checkpoint_timeout_s": 0,
        "microbatches": 1,  # gradient accumulation: the global batch is split into this many sequential parts
        "bn_group_size": 0,  # 0: BatchNorm statistics over the global batch; N: "ghost" statistics over N examples
        "ema_decay": 0.0,  # 0: no EMA of the weights; else evaluated alongside the raw weights (eval_ema/...)
        "ema_warmup": True,  # TF's min(decay, (1 + step) / (10 + step))
        "init_from": config_dict.placeholder(str),  # imported weights (cnn_jax.tools.import_weights) to start from
        "compile_keep_remat": True,  # on CPU keep rematerialisation (memory_efficient models) through XLA passes
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
        "lars_trust_coefficient": 0.001,  # LARS (You et al. 2017) for large batches
        "clip_global_norm": 0.0,  # 0: no gradient clipping
    })
    c.loss = ml_collections.ConfigDict({
        "label_smoothing": 0.0,
        "aux_weight": 0.3,  # per auxiliary head (GoogLeNet paper Sec. 5)
        "aux_weights": ml_collections.ConfigDict(),  # per-head overrides by name
    })
    return c
