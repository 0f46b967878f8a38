"""Class names of different corpora matched to a model's classes through their emotions."""

import pytest

from keras_emotion.data.emotions import EMOTIONS, canonical_emotion, match_class_names

CK_PLUS_CLASSES = ["anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise"]


def test_ck_plus_classes_map_to_the_emotions_except_contempt():
    matched, unmatched = match_class_names(CK_PLUS_CLASSES, EMOTIONS)
    assert unmatched == ["contempt"]
    assert {CK_PLUS_CLASSES[source]: EMOTIONS[model] for source, model in matched.items()} == {
        "anger": "angry",
        "disgust": "disgust",
        "fear": "fear",
        "happy": "happy",
        "sadness": "sad",
        "surprise": "surprise",
    }


def test_names_match_case_insensitively():
    assert canonical_emotion(" Angry ") == "angry"
    assert canonical_emotion("calm") is None
    assert match_class_names(["Angry", "NEUTRAL"], EMOTIONS) == ({0: 0, 1: 6}, [])


def test_the_exact_name_wins_over_a_synonym():
    # The model has both "anger" and "angry": each source name goes to its own class.
    assert match_class_names(["angry", "anger"], ["anger", "angry"]) == ({0: 1, 1: 0}, [])


def test_two_source_classes_of_one_model_class_are_refused():
    with pytest.raises(ValueError) as error:
        match_class_names(["anger", "mad"], EMOTIONS)
    assert str(error.value) == "classes 'anger' and 'mad' both match the model's class 'angry'"
