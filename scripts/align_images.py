"""Writes a still-image corpus as `predict` would cut its faces from a video (see
keras_emotion.data.stills).

The command `keras-emotion align-images` runs the same `main` (keras_emotion.cli.align_images); --help lists the flags.
"""

from keras_emotion.cli import run
from keras_emotion.cli.align_images import main

if __name__ == "__main__":
    run(main)
