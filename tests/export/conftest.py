"""Fixtures of the export tests: one tiny model, its export, CK+48 clips and Keras references."""

import keras
import pytest
import tensorflow as tf
from serving_reference import CONFIG, INFO, any_length_config, as_numpy, pipeline_features

from keras_emotion import testing
from keras_emotion.export import export_saved_model
from keras_emotion.models import build_model


@pytest.fixture(scope="session")
def export_model() -> keras.Model:
    """The model to export, built for CONFIG.num_frames = 3 frames (clips of 5 must work too)."""
    keras.utils.set_random_seed(7)
    return build_model(CONFIG)


@pytest.fixture(scope="session")
def keras_outputs(export_model):
    """A function: features {"frames", "frame_mask"} -> the Keras outputs (NumPy) of the
    reference, the export model's weights in a model built with num_frames=None."""
    model = build_model(any_length_config())
    model.set_weights(export_model.get_weights())
    return lambda features: as_numpy({name: keras.ops.convert_to_numpy(value) for name, value in model(features).items()})


@pytest.fixture(scope="session")
def ck48_clips(ck48_dir) -> list:
    """Three real CK+48 clips of 3, 3 and 5 frames (more than the model's 3)."""
    return testing.ck48_raw_clips(ck48_dir, max_clips=2) + testing.ck48_raw_clips(
        ck48_dir, frames_per_clip=5, max_clips=1
    )


@pytest.fixture(scope="session")
def ck48_shard(ck48_clips, tmp_path_factory) -> str:
    """A TFRecord shard of `ck48_clips`."""
    directory = tmp_path_factory.mktemp("export_clips")
    (path,) = testing.write_shards(ck48_clips, str(directory), split="test")
    return path


@pytest.fixture(scope="session")
def ck48_reference(ck48_shard, keras_outputs) -> dict:
    """Keras outputs on the evaluation pipeline's features of `ck48_shard`."""
    return keras_outputs(pipeline_features(ck48_shard))


@pytest.fixture(scope="session")
def exported_dir(export_model, tmp_path_factory) -> str:
    """`export_saved_model` of `export_model` into a fresh base folder: <base>/emotion/1."""
    base_dir = tmp_path_factory.mktemp("serving")
    return export_saved_model(export_model, INFO, str(base_dir), "emotion")


@pytest.fixture(scope="session")
def call_signature(exported_dir):
    """A function (signature name, {input name: array}) -> {output name: NumPy array} calling
    the export loaded back in this process."""
    served = tf.saved_model.load(exported_dir)

    def call(signature, inputs):
        answer = served.signatures[signature](**{name: tf.constant(value) for name, value in inputs.items()})
        return {name: value.numpy() for name, value in answer.items()}

    return call
