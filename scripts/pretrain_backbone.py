"""Pre-trains a face backbone on FER2013 (see keras_emotion.training.pretrain).

The command `keras-emotion pretrain` runs the same `main` (keras_emotion.cli.pretrain); --help lists the flags.
"""

from keras_emotion.cli import run
from keras_emotion.cli.pretrain import main

if __name__ == "__main__":
    run(main)
