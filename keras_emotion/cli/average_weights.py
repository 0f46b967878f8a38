"""Averages backbone weight files into one (a "model soup"; see keras_emotion.training.pretrain).

    keras-emotion average-weights --backbone dlib_resnet_256 --image_size 112 \
        --input runs/a/dlib_resnet_256_fer2013.weights.h5,runs/b/dlib_resnet_256_fer2013.weights.h5 \
        --output runs/soup.weights.h5

Writes the element-wise mean of the files' weights to --output and prints its path. The files
must come from fine-tuning runs of the same backbone that started from the same weights.
"""

from absl import app, flags

from keras_emotion.models.config import BACKBONES
from keras_emotion.training.pretrain import average_backbone_weights

FLAGS = flags.FLAGS
flags.DEFINE_list("input", None, "Two or more .weights.h5 files of the backbone, comma-separated.")
flags.DEFINE_enum("backbone", None, BACKBONES, "The backbone the files were saved from.")
flags.DEFINE_integer("image_size", None, "Face side the backbone is built for.")
flags.DEFINE_string("output", None, "The .weights.h5 file to write.")
flags.mark_flags_as_required(["input", "backbone", "image_size", "output"])


def main(argv):
    del argv
    try:
        path = average_backbone_weights(FLAGS.backbone, FLAGS.image_size, FLAGS.input, FLAGS.output)
    except (FileNotFoundError, ValueError) as error:
        raise app.UsageError(str(error)) from None
    print(f"averaged {len(FLAGS.input)} weights files -> {path}")
