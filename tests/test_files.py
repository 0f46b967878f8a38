"""Tests of keras_emotion.files: atomic files, JSON and folders, complete or absent."""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys

import pytest

from keras_emotion import files
from keras_emotion.files import atomic_directory, atomic_write, read_json, temp_path, write_json_atomically

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_temp_path_is_hidden_beside_the_file_and_keeps_a_wanted_suffix(tmp_path):
    assert temp_path(str(tmp_path / "train-00003.tfrecord")) == str(tmp_path / ".train-00003.tfrecord.tmp")
    assert temp_path(tmp_path / "best.weights.h5", keep_suffix=".weights.h5") == str(tmp_path / ".best.tmp.weights.h5")
    assert temp_path("model.keras", keep_suffix=".keras") == ".model.tmp.keras"
    with pytest.raises(ValueError, match=r"'out/model.h5': needs a file name ending with '.keras'"):
        temp_path("out/model.h5", keep_suffix=".keras")
    with pytest.raises(ValueError, match=r"'out/': needs a file name"):
        temp_path("out/")


def test_atomic_write_renames_when_complete_and_creates_the_folder(tmp_path):
    path = tmp_path / "new" / "data.bin"
    with atomic_write(path) as temp:
        assert temp == temp_path(path)
        with open(temp, "wb") as file:
            file.write(b"complete")
        assert not path.exists()
    assert path.read_bytes() == b"complete"
    assert os.listdir(path.parent) == ["data.bin"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(path) as temp:
            with open(temp, "wb") as file:
                file.write(b"half")
            raise KeyboardInterrupt
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["data.bin"]


def test_json_is_indented_and_values_that_are_not_json_write_nothing(tmp_path):
    path = tmp_path / "report.json"
    assert write_json_atomically(path, {"b": [1, 2], "a": None}) == str(path)
    assert path.read_text() == '{\n  "b": [\n    1,\n    2\n  ],\n  "a": null\n}\n'
    with pytest.raises(TypeError, match="not JSON serializable"):
        write_json_atomically(path, {"a": object()})
    assert json.loads(path.read_text()) == {"b": [1, 2], "a": None}
    assert os.listdir(tmp_path) == ["report.json"]


def test_read_json_names_the_file_and_checks_the_format_version(tmp_path):
    path = tmp_path / "info.json"
    write_json_atomically(path, {"format_version": 2, "names": ["a"]})
    assert read_json(path) == read_json(path, format_version=2) == {"format_version": 2, "names": ["a"]}
    with pytest.raises(ValueError, match=rf"^{path}: format_version=2; this library reads 1$"):
        read_json(path, format_version=1)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match=rf"^{path}: format_version=None; this library reads 1$"):
        read_json(path, format_version=1)
    path.write_text("{")
    with pytest.raises(ValueError, match=rf"^{path}: not valid JSON"):
        read_json(path)
    with pytest.raises(FileNotFoundError):
        read_json(tmp_path / "missing.json")


def test_json_reaches_the_filesystems_of_tensorflow():
    import tensorflow as tf

    path = "ram://keras_emotion_test_files/report.json"
    write_json_atomically(path, {"classes": ["happy", "sad"]})
    with tf.io.gfile.GFile(path) as file:
        assert json.load(file) == {"classes": ["happy", "sad"]}
    assert tf.io.gfile.listdir("ram://keras_emotion_test_files/") == ["report.json"]


def test_atomic_directory_appears_complete_or_not_at_all(tmp_path):
    target = tmp_path / "models" / "1"
    with atomic_directory(target) as partial:
        assert os.path.basename(partial).startswith(".1.partial-")
        (tmp_path / "models" / "1").mkdir()  # an empty folder is replaced
        with open(os.path.join(partial, "weights"), "w") as file:
            file.write("new")
    assert os.listdir(tmp_path / "models") == ["1"] and (target / "weights").read_text() == "new"

    with pytest.raises(RuntimeError, match="crash"):
        with atomic_directory(tmp_path / "models" / "2"):
            raise RuntimeError("crash")
    assert os.listdir(tmp_path / "models") == ["1"]


def test_an_existing_folder_is_kept_unless_overwrite(tmp_path):
    target = tmp_path / "1"
    target.mkdir()
    (target / "weights").write_text("old")
    with pytest.raises(FileExistsError, match=rf"^{target}: cannot move the new folder into place"):
        with atomic_directory(target) as partial:
            with open(os.path.join(partial, "weights"), "w") as file:
                file.write("new")
    assert os.listdir(tmp_path) == ["1"] and (target / "weights").read_text() == "old"

    with atomic_directory(target, overwrite=True) as partial:
        with open(os.path.join(partial, "weights"), "w") as file:
            file.write("new")
    assert os.listdir(tmp_path) == ["1"] and (target / "weights").read_text() == "new"


def test_overwrite_restores_the_old_folder_when_the_new_one_cannot_move_in(tmp_path, monkeypatch):
    target = tmp_path / "1"
    target.mkdir()
    (target / "weights").write_text("old")
    real_rename = os.rename

    def rename(source, destination):
        if os.path.basename(source).startswith(".1.partial-") and not source.endswith(".replaced"):
            raise OSError("no space left on device")
        real_rename(source, destination)

    monkeypatch.setattr(files.os, "rename", rename)
    with pytest.raises(FileExistsError, match="no space left on device"):
        with atomic_directory(target, overwrite=True) as partial:
            with open(os.path.join(partial, "weights"), "w") as file:
                file.write("new")
    assert os.listdir(tmp_path) == ["1"] and (target / "weights").read_text() == "old"


def test_the_module_imports_without_tensorflow():
    script = "import sys, keras_emotion.files; print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_a_second_writer_is_refused_naming_the_holder_and_a_killed_holder_is_taken_over(tmp_path, lock_holder):
    holder = lock_holder(tmp_path)
    lock_path = tmp_path / files.LOCK_NAME
    owner = json.loads(lock_path.read_text())
    assert (owner["pid"], owner["host"], owner["command"]) == (holder.pid, socket.gethostname(), "holder")
    with pytest.raises(files.OutputDirInUseError) as refused:
        with files.OutputDirLock(tmp_path, "train"):
            pytest.fail("a second writer got the lock")
    assert str(refused.value) == (
        f"{tmp_path} is in use by another run (holder, PID {holder.pid} on {socket.gethostname()}, since "
        f"{owner['since']}): wait for it to end or use another output folder; if that run is gone, delete {lock_path}"
    )
    assert json.loads(lock_path.read_text()) == owner

    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with pytest.warns(UserWarning, match=rf"{lock_path}: taking over the stale lock of PID {holder.pid} on "):
        with files.OutputDirLock(tmp_path, "train"):
            assert json.loads(lock_path.read_text())["pid"] == os.getpid()
    assert sorted(os.listdir(tmp_path)) == []


def test_a_lock_of_a_reused_pid_is_stale_and_one_of_another_host_is_held(tmp_path):
    lock_path = tmp_path / files.LOCK_NAME
    reused = {"pid": os.getppid(), "host": socket.gethostname(), "command": "train", "process_start": -1, "since": "x"}
    lock_path.write_text(json.dumps(reused))
    with pytest.warns(UserWarning, match="taking over the stale lock"):
        with files.OutputDirLock(tmp_path, "export"):
            pass
    elsewhere = dict(reused, host="other-host", pid=1)
    lock_path.write_text(json.dumps(elsewhere))
    with pytest.raises(files.OutputDirInUseError, match=r"\(train, PID 1 on other-host, since x\)"):
        with files.OutputDirLock(tmp_path, "export"):
            pass


@pytest.mark.parametrize(
    "script, arguments, locked",
    [
        ("export.py", ["--model={tmp}/trained", "--base_dir={tmp}/serving", "--name=emo"], "serving/emo"),
        ("ablation.py", ["--data={tmp}/tfrecords", "--output_dir={tmp}/ablation"], "ablation"),
    ],
)
def test_export_and_ablation_refuse_an_output_folder_in_use(tmp_path, lock_holder, script, arguments, locked):
    holder = lock_holder(tmp_path / locked)
    command = [sys.executable, str(REPO_ROOT / "scripts" / script), *(a.format(tmp=tmp_path) for a in arguments)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 1
    assert completed.stderr.splitlines()[-1].startswith(
        f"{script[:-3]}: {tmp_path / locked} is in use by another run (holder, PID {holder.pid} on "
    )
    assert os.listdir(tmp_path / locked) == [files.LOCK_NAME]
