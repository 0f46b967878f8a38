"""Trains a video emotion model on aligned-face TFRecords (see keras_emotion.training.task).

The command `keras-emotion train` runs the same `main` (keras_emotion.cli.train); --help lists the flags.
"""

from keras_emotion.cli import run
from keras_emotion.cli.train import main

if __name__ == "__main__":
    run(main)
