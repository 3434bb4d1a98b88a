"""Model families. Importing this package registers every model (see ``cnn_jax.registry``)."""

import importlib

# One module per family; each registers its variants on import.
FAMILY_MODULES = (
    "lenet",
    "alexnet",
    "vgg",
    "nin",
    "resnet",
    "preact_resnet",
    "cifar_resnet",
    "resnest",
    "googlenet",
    "inception",
    "densenet",
    "mobilenet",
    "efficientnet",
    "mnasnet",
    "shufflenet",
)

for _family in FAMILY_MODULES:
    importlib.import_module(f"{__name__}.{_family}")
