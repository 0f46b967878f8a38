"""The `keras-emotion` console entry point (keras_emotion.cli): the installed command runs the
same mains as scripts/, and prints the tool's results without TensorFlow's or absl's INFO lines."""

import os
import re
import shutil
import subprocess
import sys

KERAS_EMOTION = shutil.which("keras-emotion", path=os.path.dirname(sys.executable))
# What TensorFlow's C++ libraries print while they load, before its logging settings apply (no
# setting hides these): absl's notice, oneDNN and CPU-feature notes, the CUDA probe of the
# `tensorflow` wheel on a machine without a GPU.
TENSORFLOW_LOAD_LINE = re.compile(
    r"All log messages before absl::InitializeLog"
    r"|^[IWE]0000 00:00:\S+ +\d+ (port|cudart_stub|cuda_platform|cuda_executor|cpu_feature_guard)\.cc:\d+\]"
    r"|^To enable the following instructions"
)
# An INFO line of absl's Python logging (TensorFlow's Python side logs through it).
ABSL_INFO_LINE = re.compile(r"^I\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+\.py:\d+\]", re.MULTILINE)


def run_command(*arguments: str) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([KERAS_EMOTION, *arguments], capture_output=True, text=True, timeout=600, env=environment)


def test_the_console_script_is_installed_and_lists_its_commands():
    assert KERAS_EMOTION is not None, f"keras-emotion not installed beside {sys.executable}"
    completed = run_command()
    assert completed.returncode == 2
    assert completed.stderr.startswith("usage: keras-emotion {preprocess|train|evaluate|export|predict|visualize}")
    assert run_command("--help").returncode == 0


def test_export_prints_its_result_and_no_info_lines_unless_asked(tiny_trained_model_dir, tmp_path):
    quiet = run_command("export", f"--model_dir={tiny_trained_model_dir}", f"--base_dir={tmp_path}", "--name=emotion")
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert quiet.stdout.strip() == f"exported {tmp_path / 'emotion' / '1'} (signatures serving_default, encoded_frames, tf_example)"
    assert all(TENSORFLOW_LOAD_LINE.search(line) for line in quiet.stderr.splitlines() if line), quiet.stderr[-3000:]
    verbose = run_command(
        "export", f"--model_dir={tiny_trained_model_dir}", f"--base_dir={tmp_path}", "--name=emotion", "--verbosity=0"
    )
    assert verbose.returncode == 0 and (tmp_path / "emotion" / "2" / "saved_model.pb").is_file()
    assert ABSL_INFO_LINE.search(verbose.stderr), verbose.stderr[-3000:]


def test_a_bad_flag_value_is_a_usage_error_naming_the_folder(tmp_path):
    completed = run_command("export", f"--model_dir={tmp_path / 'missing'}", f"--base_dir={tmp_path}", "--name=emotion")
    assert completed.returncode == 1
    assert f"{tmp_path / 'missing' / 'model_info.json'} not found" in completed.stderr
