"""Trains an experiment config: ``python launch.py --config experiments/<family>/<file>.py[:arg] --workdir DIR
[--config.key=value ...]`` (installed: ``cnn-jax-train``). ``--help`` lists the flags; ``cnn_jax/launch.py``
documents them and the exit statuses."""

if __name__ == "__main__":
    from cnn_jax.cli import train

    train()
