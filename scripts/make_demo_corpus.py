"""Generates the synthetic demo corpus (see keras_emotion.data.demo) in the AFEW layout.

    python scripts/make_demo_corpus.py --output_dir demo_corpus

Writes `<output_dir>/{Train,Val}/<class>/<clip>.avi`, `<output_dir>/demo_sequence.avi`, README.txt
and corpus.json (default `<output_dir>`: demo_corpus in the current folder); does nothing when
`<output_dir>` already holds the same corpus. Prints where and how long.
"""

import time

from absl import flags

from keras_emotion.cli import define_alias, run
from keras_emotion.data.demo import SEQUENCE_NAME, make_demo_corpus

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", "demo_corpus", "Folder to create.")
define_alias("output", "output_dir")
flags.DEFINE_integer("num_train", 16, "Clips per class in Train.")
flags.DEFINE_integer("num_val", 6, "Clips per class in Val.")
flags.DEFINE_integer("frames", 12, "Frames per clip.")
flags.DEFINE_integer("seed", 0, "The same seed always gives the same videos.")


def main(argv):
    del argv
    start = time.perf_counter()
    root = make_demo_corpus(FLAGS.output_dir, FLAGS.num_train, FLAGS.num_val, FLAGS.frames, FLAGS.seed)
    print(f"demo corpus ready in {time.perf_counter() - start:.1f} s: {root} (sequence video {root / SEQUENCE_NAME})")


if __name__ == "__main__":
    run(main)
