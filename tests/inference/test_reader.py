"""Reading ahead in a background thread (inference.reader)."""

import threading

import pytest

from keras_emotion.inference.reader import read_ahead


def test_items_come_in_order_and_produced_in_another_thread():
    producers = []

    def numbers():
        for number in range(50):
            producers.append(threading.current_thread())
            yield number

    assert list(read_ahead(numbers(), size=3)) == list(range(50))
    assert set(producers) != {threading.current_thread()}


def test_an_error_of_the_source_is_raised_after_the_items_before_it():
    def failing():
        yield 1
        yield 2
        raise OSError("video.avi: truncated")

    received = []
    with pytest.raises(OSError, match="video.avi: truncated"):
        for item in read_ahead(failing(), size=1):
            received.append(item)
    assert received == [1, 2]


def test_stopping_early_stops_the_thread():
    produced = []

    def endless():
        number = 0
        while True:
            produced.append(number)
            yield number
            number += 1

    reader = read_ahead(endless(), size=2)
    assert next(reader) == 0
    reader.close()
    count = len(produced)
    assert count <= 5  # the first item, the buffer and at most one more
    assert not any(thread.name == "read_ahead" for thread in threading.enumerate())
    with pytest.raises(ValueError, match="size=0"):
        next(read_ahead([], size=0))
