"""Runs the paper's ablation tables by k-fold cross-validation over subjects (see
keras_emotion.training.ablation).

The command `keras-emotion ablation` runs the same `main` (keras_emotion.cli.ablation); --help lists the flags.
"""

from keras_emotion.cli import run
from keras_emotion.cli.ablation import main

if __name__ == "__main__":
    run(main)
