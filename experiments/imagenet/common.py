"""What every ImageNet recipe shares: the TFDS ``imagenet2012`` source (prepared from the manual download, see the
README's Data section), Inception-style random-resized crop + flip for training, resize + centre crop for
evaluation (crop fraction from the model's metadata), exact evaluation over the 50,000 validation images."""

import ml_collections

from cnn_jax.config import base_config


def imagenet_config(model: str, image_size: int = 224) -> ml_collections.ConfigDict:
    c = base_config()
    c.model.name = model
    c.model.num_classes = 1000
    c.data.name = "imagenet2012"
    c.data.image_size = image_size
    c.data.train_transform = "random_resized_crop,flip"
    c.data.eval_transform = "resize_center_crop"
    c.train.global_batch = 256
    c.train.eval_batch = 1000
    c.train.log_every_steps = 100
    c.train.checkpoint_every_steps = 2000
    return c
