"""Draws the paper's Fig. 2 for one clip, or the confusion matrix of an evaluation.

The command `keras-emotion visualize` runs the same `main` (keras_emotion.cli.visualize); --help lists the flags.
"""

from keras_emotion.cli import run
from keras_emotion.cli.visualize import main

if __name__ == "__main__":
    run(main)
