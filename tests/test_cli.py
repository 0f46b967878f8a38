"""The `keras-emotion` console entry point (keras_emotion.cli): the installed command runs the
same mains as scripts/, prints the tool's results without TensorFlow's or absl's INFO lines, names
flags with one vocabulary (the old names as deprecated aliases), writes its default outputs into
the current folder, and preprocesses with the local or the Beam runner alike."""

import glob
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import app, flags

import keras_emotion
from keras_emotion import cli
from keras_emotion.data import schema
from keras_emotion.data.beam_pipeline import FAILURES_NAME
from keras_emotion.data.demo import CLASS_NAMES
from keras_emotion.data.faces import AlignmentConfig
from keras_emotion.data.manifest import read_manifest
from keras_emotion.models.backbones import build_backbone
from keras_emotion.models.info import FRAMING_FIELDS, ModelInfo, Preprocessing, read_model_info, write_model_info
from keras_emotion.pretrained import PRETRAINED_MODEL_DIR
from keras_emotion.training.pretrain import PretrainConfig
from keras_emotion.data.preprocess import REPORT_NAME

KERAS_EMOTION = shutil.which("keras-emotion", path=os.path.dirname(sys.executable))
PACKAGE_DIR = pathlib.Path(keras_emotion.__file__).parent
# An INFO line of absl's Python logging (TensorFlow's Python side logs through it).
ABSL_INFO_LINE = re.compile(r"^I\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+\.py:\d+\]", re.MULTILINE)
# Any INFO line of TensorFlow or absl (Python or C++), or absl's notice before its C++ logging starts.
INFO_LINE = re.compile(r"^I\d{4} |^INFO|^W\d{4} |^WARNING: All log messages", re.MULTILINE)
# Each command's deprecated flag names: {old: new}.
ALIASES = {
    "preprocess": {"output": "output_dir"},
    "train": {"train_dir": "data", "val_dir": "val_data"},
    "evaluate": {"model_dir": "model", "images": "input"},
    "export": {"model_dir": "model"},
    "visualize": {"video": "input", "tfrecords": "data"},
    "pretrain": {"data_dir": "input"},
    "ablation": {"tfrecords": "data", "backbone_model": "model"},
}
# The flags a command requires besides those.
REQUIRED_FLAGS = {"preprocess": ["--dataset=afew", "--input=corpus"], "export": ["--base_dir=serving"], "visualize": ["--output=fig2.png"]}


def run_command(*arguments: str, cwd=None) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run(
        [KERAS_EMOTION, *arguments], capture_output=True, text=True, timeout=600, env=environment, cwd=cwd
    )


def test_the_console_script_is_installed_and_lists_its_commands():
    assert KERAS_EMOTION is not None, f"keras-emotion not installed beside {sys.executable}"
    completed = run_command()
    assert completed.returncode == 2
    assert completed.stderr.startswith(
        "usage: keras-emotion {preprocess|train|evaluate|export|predict|visualize|pretrain|average-weights|train-face-clips|ablation|align-images}"
    )
    assert run_command("--help").returncode == 0


def test_export_prints_its_result_and_no_info_lines_unless_asked(tiny_trained_model_dir, tmp_path):
    quiet = run_command("export", f"--model={tiny_trained_model_dir}", f"--base_dir={tmp_path}", "--name=emotion")
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert quiet.stdout.strip() == f"exported {tmp_path / 'emotion' / '1'} (signatures serving_default, encoded_frames, tf_example)"
    assert not INFO_LINE.search(quiet.stderr), quiet.stderr[-3000:]  # TensorFlow's load notices included
    verbose = run_command(
        "export", f"--model={tiny_trained_model_dir}", f"--base_dir={tmp_path}", "--name=emotion", "--verbosity=0"
    )
    assert verbose.returncode == 0 and (tmp_path / "emotion" / "2" / "saved_model.pb").is_file()
    assert ABSL_INFO_LINE.search(verbose.stderr), verbose.stderr[-3000:]


def test_a_bad_flag_value_is_a_usage_error_naming_the_folder(tmp_path):
    completed = run_command("export", f"--model={tmp_path / 'missing'}", f"--base_dir={tmp_path}", "--name=emotion")
    assert completed.returncode == 1
    assert f"{tmp_path / 'missing' / 'model_info.json'} not found" in completed.stderr


def test_a_deprecated_flag_name_still_works_with_one_warning_line(tmp_path):
    missing = tmp_path / "missing"
    completed = run_command("export", f"--model_dir={missing}", f"--base_dir={tmp_path}", "--name=emotion")
    assert completed.returncode == 1
    assert [line for line in completed.stderr.splitlines() if "is deprecated: use" in line] == [
        "--model_dir is deprecated: use --model"
    ]
    assert f"{missing / 'model_info.json'} not found" in completed.stderr  # the value reached --model

    both = run_command("export", f"--model_dir={missing}", f"--model={missing}", f"--base_dir={tmp_path}")
    assert both.returncode == 1
    assert "give --model or its deprecated alias --model_dir, not both" in both.stderr
    assert "is deprecated" not in both.stderr and "not found" not in both.stderr


@pytest.fixture
def alias_flags():
    """A fresh FlagValues with --model (string), --input (list) and their aliases, as
    `cli.define_alias` defines them on absl's FLAGS; absl's FLAGS are left as they were."""
    values = flags.FlagValues()
    flags.DEFINE_string("model", "shipped", "A model.", flag_values=values)
    flags.DEFINE_list("input", [], "Inputs.", flag_values=values)
    saved = dict(cli._ALIASES)
    cli._ALIASES.clear()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(cli, "FLAGS", values)
            cli.define_alias("model_dir", "model")
            cli.define_alias("videos", "input")
            yield values
    finally:
        cli._ALIASES.clear()
        cli._ALIASES.update(saved)


def test_an_alias_sets_its_flag_and_warns_once(alias_flags, capsys):
    alias_flags(["prog", "--model_dir=runs/x", "--videos=a.avi,b.avi"])
    cli.resolve_aliases()
    assert (alias_flags.model, alias_flags.input) == ("runs/x", ["a.avi", "b.avi"])
    assert alias_flags["model"].present and alias_flags["input"].present
    assert capsys.readouterr().err.splitlines() == ["--model_dir is deprecated: use --model", "--videos is deprecated: use --input"]
    assert "Deprecated alias of --model." in alias_flags["model_dir"].help


def test_without_aliases_nothing_changes_and_both_names_are_a_usage_error(alias_flags, capsys):
    alias_flags(["prog", "--model=runs/y"])
    cli.resolve_aliases()
    assert (alias_flags.model, alias_flags.input) == ("runs/y", [])
    assert capsys.readouterr().err == ""
    alias_flags.unparse_flags()
    alias_flags(["prog", "--model=runs/y", "--model_dir=runs/x"])
    with pytest.raises(app.UsageError, match=r"^give --model or its deprecated alias --model_dir, not both$"):
        cli.resolve_aliases()


def test_a_config_takes_the_values_of_the_flags_named_like_its_fields(monkeypatch):
    values = flags.FlagValues()
    flags.DEFINE_string("input", None, "Images.", flag_values=values)
    flags.DEFINE_string("output_dir", "runs/x", "Output.", flag_values=values)
    flags.DEFINE_integer("epochs", 30, "Epochs.", flag_values=values)
    flags.DEFINE_list("extra_data_dirs", [], "More images.", flag_values=values)
    flags.DEFINE_bool("dry_run", False, "Not a field of the config.", flag_values=values)
    values(["prog", "--input=faces", "--epochs=3", "--extra_data_dirs=a,b"])
    monkeypatch.setattr(cli, "FLAGS", values)
    config = cli.config_from_flags(PretrainConfig, __name__, data_dir=values.input, seed=7)
    assert config == PretrainConfig(data_dir="faces", output_dir="runs/x", epochs=3, extra_data_dirs=("a", "b"), seed=7)


@pytest.mark.parametrize("command", sorted(ALIASES))
def test_each_command_takes_its_old_flag_names(command):
    """Every old name of the command's flags sets the new flag (a list flag, --extra_data_dirs,
    keeps its role name)."""
    aliases = ALIASES[command]
    script = (
        "import json, sys; from absl import flags; from keras_emotion import cli; "
        f"import keras_emotion.cli.{command}; flags.FLAGS(sys.argv); cli.resolve_aliases(); "
        f"print(json.dumps({{new: flags.FLAGS[new].value for new in {sorted(aliases.values())!r}}}))"
    )
    arguments = [f"--{old}=value_of_{old}" for old in aliases] + REQUIRED_FLAGS.get(command, [])
    completed = subprocess.run(
        [sys.executable, "-c", script, command, *arguments], capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert json.loads(completed.stdout.splitlines()[-1]) == {new: f"value_of_{old}" for old, new in aliases.items()}
    warnings = [line for line in completed.stderr.splitlines() if "is deprecated: use" in line]
    assert sorted(warnings) == sorted(f"--{old} is deprecated: use --{new}" for old, new in aliases.items())


def _package_files() -> set:
    """The package's files other than Python sources and their caches."""
    return {
        path
        for path in PACKAGE_DIR.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".py", ".pyc")
    }


def test_preprocess_writes_into_tfrecords_of_the_current_folder_by_default(small_demo_corpus, tmp_path):
    before = _package_files()
    completed = run_command(
        "preprocess", "--dataset=afew", f"--input={small_demo_corpus}", "--workers=1", "--upsample=0", cwd=tmp_path
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    output = tmp_path / "tfrecords" / "afew"
    assert completed.stdout.startswith(f"8 clips of 4 classes -> {os.path.join('tfrecords', 'afew')}\n")
    assert "8 clips: 8 written" in completed.stdout
    assert sorted(os.listdir(output)) == sorted(
        [REPORT_NAME, schema.MANIFEST_NAME, "train-00000.tfrecord", "val-00000.tfrecord"]
    )
    manifest = read_manifest(str(output))
    assert manifest.num_clips == 8
    shipped = read_model_info(PRETRAINED_MODEL_DIR).alignment
    assert [getattr(manifest.alignment, name) for name in FRAMING_FIELDS] == [getattr(shipped, name) for name in FRAMING_FIELDS]
    assert not (PACKAGE_DIR / "tfrecords").exists()
    assert _package_files() == before
    assert not INFO_LINE.search(completed.stderr), completed.stderr[-3000:]


def test_preprocess_aligns_faces_like_the_model_given_but_for_the_framing_flags_given(small_demo_corpus, tmp_path):
    model_dir = tmp_path / "model"
    model_framing = AlignmentConfig(output_size=112, eye_level=0.42, eye_distance=0.31)
    info = ModelInfo(class_names=list(CLASS_NAMES), preprocessing=Preprocessing(64, 1.0), alignment=model_framing)
    write_model_info(str(model_dir), info)
    common = ["preprocess", "--dataset=afew", f"--input={small_demo_corpus}", "--workers=1", "--upsample=0"]
    completed = run_command(*common, f"--like_model={model_dir}", "--eye_distance=0.33", f"--output_dir={tmp_path / 'data'}")
    assert completed.returncode == 0, completed.stderr[-3000:]
    alignment = read_manifest(str(tmp_path / "data")).alignment
    assert (alignment.landmarks, alignment.eye_level, alignment.eye_distance) == (68, 0.42, 0.33)
    assert alignment.output_size == schema.IMAGE_SIZE  # the stored side is not part of the framing

    completed = run_command(*common, f"--like_model={tmp_path}", f"--output_dir={tmp_path / 'other'}")
    assert completed.returncode == 1
    assert f"--like_model: {tmp_path}: not a model directory (no model_info.json" in completed.stderr
    assert not (tmp_path / "other").exists()


def _clips(path: str) -> dict:
    """The clips of one shard, {clip id: SequenceExample} (protos compare field by field: the
    byte order of their feature maps may differ from one process to another)."""
    clips = {}
    for record in tf.data.TFRecordDataset(path):
        example = tf.train.SequenceExample.FromString(record.numpy())
        clips[example.context.feature["clip_id"].bytes_list.value[0].decode()] = example
    return clips


def test_preprocess_with_the_beam_runner_writes_what_the_local_runner_writes(small_demo_corpus, tmp_path):
    """The same shards (names, clip ids, every feature of every clip), the same manifest and the
    same report (the file the corpus listing skipped included) but for its timings
    (`wall_seconds`, `stats.seconds`); Beam also writes failures.jsonl."""
    corpus = tmp_path / "corpus"
    shutil.copytree(small_demo_corpus, corpus)
    (corpus / "Train" / "happy" / "notes.txt").write_text("not a video")
    common = ["preprocess", "--dataset=afew", f"--input={corpus}", "--upsample=0"]
    local = run_command(*common, f"--output_dir={tmp_path / 'local'}", "--workers=1")
    assert local.returncode == 0, local.stderr[-3000:]
    beam = run_command(
        *common, f"--output_dir={tmp_path / 'beam'}", "--runner=beam", "--num_shards=1", "--", "--direct_num_workers=1"
    )
    assert beam.returncode == 0, beam.stderr[-3000:]
    assert "8 clips: 8 written, 0 already done, 1 failures" in local.stdout
    assert "8 clips: 8 written, 0 already done, 1 failures" in beam.stdout

    shards = sorted(os.path.basename(path) for path in glob.glob(schema.shard_pattern(str(tmp_path / "local"))))
    assert shards == ["train-00000.tfrecord", "val-00000.tfrecord"]
    assert sorted(os.listdir(tmp_path / "beam")) == sorted(os.listdir(tmp_path / "local") + [FAILURES_NAME])
    clips = {shard: _clips(str(tmp_path / "local" / shard)) for shard in shards}
    assert sorted(len(shard_clips) for shard_clips in clips.values()) == [4, 4]
    for shard in shards:
        assert _clips(str(tmp_path / "beam" / shard)) == clips[shard], shard
    assert (tmp_path / "beam" / FAILURES_NAME).read_text() == ""

    manifests = [json.loads((tmp_path / runner / schema.MANIFEST_NAME).read_text()) for runner in ("local", "beam")]
    assert manifests[0] == manifests[1]
    assert manifests[0]["class_names"] == list(CLASS_NAMES) and manifests[0]["num_clips"] == 8
    reports = [json.loads((tmp_path / runner / REPORT_NAME).read_text()) for runner in ("local", "beam")]
    for report in reports:
        del report["wall_seconds"], report["stats"]["seconds"]
    assert reports[0] == reports[1]
    assert [failure["path"] for failure in reports[0]["failures"]] == [str(corpus / "Train" / "happy" / "notes.txt")]


def test_preprocess_takes_beam_options_only_for_the_beam_runner(small_demo_corpus, tmp_path):
    common = ["preprocess", "--dataset=afew", f"--input={small_demo_corpus}", f"--output_dir={tmp_path}"]
    completed = run_command(*common, "--", "--direct_num_workers=2")
    assert completed.returncode == 1
    assert "unexpected arguments ['--direct_num_workers=2']: only --runner beam takes Beam options (after --)" in completed.stderr
    completed = run_command(*common, "--num_shards=2")
    assert completed.returncode == 1
    assert "--num_shards is for --runner beam; the local runner bounds shards by --shard_mb" in completed.stderr
    assert not os.listdir(tmp_path)


def test_average_weights_writes_the_mean_and_names_a_bad_input(tmp_path):
    paths = []
    for seed in (1, 2):
        keras.utils.set_random_seed(seed)
        paths.append(str(tmp_path / f"run{seed}.weights.h5"))
        build_backbone("compact", 32).save_weights(paths[-1])
    output = tmp_path / "soup.weights.h5"
    flags_ = ["--backbone=compact", "--image_size=32", f"--output={output}"]
    completed = run_command("average-weights", f"--input={','.join(paths)}", *flags_)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.strip() == f"averaged 2 weights files -> {output}"
    kernels = [build_backbone("compact", 32, path).get_layer("stage1_conv1").kernel.numpy() for path in [*paths, output]]
    np.testing.assert_allclose(kernels[2], (kernels[0] + kernels[1]) / 2, rtol=1e-6, atol=1e-7)

    missing = tmp_path / "missing.weights.h5"
    completed = run_command("average-weights", f"--input={paths[0]},{missing}", *flags_)
    assert completed.returncode == 1
    assert f"backbone weights file {missing} does not exist" in completed.stderr
