"""Fixtures shared by the whole test suite."""

import pathlib
import subprocess
import sys

import pytest


REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_dir() -> pathlib.Path:
    """The read-only shared data folder, `<repo root>/../shared` (holds data/ck48 and data/fer2013)."""
    path = REPO_ROOT.parent / "shared"
    assert path.is_dir(), f"shared data folder {path} is missing"
    return path


@pytest.fixture(scope="session")
def ck48_raw_tfrecords(shared_dir, tmp_path_factory) -> str:
    """A directory of unaligned CK+48 "train" shards (see `testing.ck48_raw_clips`), 3 shards:
    60 three-frame clips (one per sequence) and 12 twenty-frame clips (a subject's sequences
    chained), so that clips are both shorter and longer than a typical num_frames."""
    from keras_emotion import testing

    ck48_dir = str(shared_dir / "data" / "ck48" / "CK+48")
    clips = testing.ck48_raw_clips(ck48_dir, max_clips=60) + testing.ck48_raw_clips(
        ck48_dir, frames_per_clip=20, max_clips=12
    )
    directory = str(tmp_path_factory.mktemp("ck48_raw_tfrecords"))
    testing.write_shards(clips, directory, split="train", num_shards=3)
    return directory


@pytest.fixture(scope="session")
def ck48_dir(shared_dir) -> str:
    """The CK+48 folder: `<class>/S###_###_########.png`, 7 classes, 3 frames per clip."""
    return str(shared_dir / "data" / "ck48" / "CK+48")


@pytest.fixture(scope="session")
def write_avi():
    """A function `write_avi(path, frames_rgb, fps=10.0)` writing (H, W, 3) RGB uint8 frames as an MJPG .avi."""

    def write(path, frames_rgb, fps=10.0):
        import cv2

        height, width = frames_rgb[0].shape[:2]
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
        assert writer.isOpened(), f"cannot write {path}"
        for frame in frames_rgb:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        writer.release()

    return write


@pytest.fixture(scope="session")
def face_pictures(tmp_path_factory) -> pathlib.Path:
    """Real photographs in class folders (FER2013 layout): happy/astronaut.png (skimage's
    astronaut), sad/astronaut_mirrored.jpg, and angry/coffee.png, a coffee cup without a face."""
    import cv2
    import numpy as np
    from skimage import data as skimage_data

    root = tmp_path_factory.mktemp("pictures") / "pictures"
    astronaut = skimage_data.astronaut()
    pictures = {
        "happy/astronaut.png": astronaut,
        "sad/astronaut_mirrored.jpg": np.ascontiguousarray(astronaut[:, ::-1]),
        "angry/coffee.png": cv2.resize(skimage_data.coffee(), (512, 512)),
    }
    for name, image in pictures.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return root


@pytest.fixture(scope="session")
def ck48_tfrecords(ck48_dir, tmp_path_factory) -> str:
    """A directory of ALL of CK+48 preprocessed once per session by `preprocess_corpus`
    (2 workers, detector upsample 0, which finds every CK+48 face at a ninth of the cost):
    264 aligned 256x256 three-frame clips, all in split "train", `train-NNNNN.tfrecord` shards
    (about 2 MiB each, 5 of them) plus `manifest.json` and `report.json`."""
    from keras_emotion.data.datasets import load_dataset
    from keras_emotion.data.faces import AlignmentConfig
    from keras_emotion.data.preprocess import PreprocessConfig, preprocess_corpus

    dataset = load_dataset("ck48", ck48_dir)
    directory = str(tmp_path_factory.mktemp("ck48_tfrecords"))
    config = PreprocessConfig(alignment=AlignmentConfig(upsample=0), shard_bytes=2 * 2**20)
    report = preprocess_corpus(
        dataset.clips, directory, config, 2, dataset.class_names, dataset.skipped, progress=False
    )
    assert not report.failures, report.summary()
    return directory


@pytest.fixture(scope="session")
def small_demo_corpus(tmp_path_factory) -> pathlib.Path:
    """The synthetic demo corpus (`data.demo`) with 1 + 1 four-frame clips per class; its
    `demo_sequence.avi` is 134 frames of 256 x 256, one face through the 4 expressions."""
    from keras_emotion.data.demo import make_demo_corpus

    return make_demo_corpus(tmp_path_factory.mktemp("small_demo") / "corpus", num_train=1, num_val=1, frames=4)


@pytest.fixture(scope="session")
def tiny_trained_model_dir(tmp_path_factory) -> str:
    """A `models.saving.save_trained_model` folder of an untrained tiny model for the 4 demo
    classes: compact backbone, 8 frames, 64 px crops of the 73 px resized face, 2 SA heads,
    temporal softmax pooling. Its class-score kernel is scaled up 200 times so that the
    probabilities and frame importances differ clearly from one input to another."""
    import keras

    from keras_emotion.data.demo import CLASS_NAMES
    from keras_emotion.data.config import InputConfig
    from keras_emotion.models import ModelConfig, build_model
    from keras_emotion.models.saving import save_trained_model

    config = ModelConfig(num_classes=4, num_frames=8, image_size=64, num_heads=2, attention_units=8)
    keras.utils.set_random_seed(5)
    model = build_model(config)
    kernel = model.get_layer("frame_scores").kernel
    kernel.assign(kernel.numpy() * 200.0)
    directory = str(tmp_path_factory.mktemp("tiny_trained_model"))
    input_config = InputConfig(file_pattern=directory, num_frames=8, image_size=64, crop_fraction=0.875)
    save_trained_model(model, directory, config, input_config, list(CLASS_NAMES))
    return directory


@pytest.fixture
def global_dtype_policy():
    """`keras.mixed_precision.set_global_policy`, for a test that sets Keras' global dtype
    policy (e.g. "mixed_float16"); the previous policy is restored after the test."""
    import keras

    previous = keras.config.dtype_policy()
    yield keras.mixed_precision.set_global_policy
    keras.mixed_precision.set_global_policy(previous)


LOCK_HOLDER = """
import sys, time
from keras_emotion.files import OutputDirLock
with OutputDirLock(sys.argv[1], "holder"):
    print("locked", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def lock_holder():
    """A function `lock_holder(folder)` starting a real process that holds the
    `files.OutputDirLock` of `folder` (command "holder") and returning its Popen; the
    processes still running are killed after the test."""
    holders = []

    def start(folder) -> subprocess.Popen:
        holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(folder)], stdout=subprocess.PIPE, text=True)
        holders.append(holder)
        assert holder.stdout.readline() == "locked\n"
        return holder

    yield start
    for holder in holders:
        if holder.poll() is None:
            holder.kill()
        holder.wait()
        holder.stdout.close()
