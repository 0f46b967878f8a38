"""Averages backbone weight files into one (see keras_emotion.cli.average_weights).

The command `keras-emotion average-weights` runs the same `main`; --help lists the flags.
"""

from keras_emotion.cli import run
from keras_emotion.cli.average_weights import main

if __name__ == "__main__":
    run(main)
