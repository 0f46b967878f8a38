"""Emotion class names and their synonyms across corpora.

Corpora name the same emotion differently (CK+ "anger" and "sadness", FER2013 "angry" and
"sad", AFEW "Angry"). A name is matched case-insensitively through `SYNONYMS` to one of the
seven `EMOTIONS` (the FER2013/AFEW set, in FER2013's label order):

    angry      anger, angry, mad
    disgust    disgust, disgusted
    fear       fear, fearful, afraid, scared
    happy      happy, happiness, joy
    sad        sad, sadness
    surprise   surprise, surprised
    neutral    neutral

Any other name (CK+ "contempt", RAVDESS "calm") has no emotion: `canonical_emotion` gives
None, and evaluation skips and lists such classes.
"""

from __future__ import annotations

from typing import Optional, Sequence

EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

SYNONYMS = {
    "angry": ("anger", "angry", "mad"),
    "disgust": ("disgust", "disgusted"),
    "fear": ("fear", "fearful", "afraid", "scared"),
    "happy": ("happy", "happiness", "joy"),
    "sad": ("sad", "sadness"),
    "surprise": ("surprise", "surprised"),
    "neutral": ("neutral",),
}

_EMOTION_OF_NAME = {synonym: emotion for emotion, names in SYNONYMS.items() for synonym in names}


def canonical_emotion(name: str) -> Optional[str]:
    """The emotion of EMOTIONS that `name` means (case and surrounding spaces ignored), or None."""
    return _EMOTION_OF_NAME.get(name.strip().lower())


def match_class_names(source_names: Sequence[str], model_names: Sequence[str]) -> tuple[dict, list]:
    """Matches a corpus' classes to a model's classes through their emotions.

    A source class matches the model class of the same name (case-insensitive), else the
    model class whose emotion (`canonical_emotion`) is the same.

    Args:
        source_names: the corpus' class names, index = its label.
        model_names: the model's class names, index = its class index.

    Returns:
        (model_index_by_source_index, unmatched): a dict {source label: model class index}
        and the source class names that match no model class, in source order.

    Raises:
        ValueError: two source classes match the same model class (naming both).
    """
    model_index = {name.strip().lower(): index for index, name in enumerate(model_names)}
    for index, name in enumerate(model_names):
        model_index.setdefault(canonical_emotion(name) or name.strip().lower(), index)
    matched, unmatched, source_of_model = {}, [], {}
    for source_index, name in enumerate(source_names):
        key = name.strip().lower()
        index = model_index.get(key, model_index.get(canonical_emotion(name) or key))
        if index is None:
            unmatched.append(name)
            continue
        if index in source_of_model:
            raise ValueError(
                f"classes {source_of_model[index]!r} and {name!r} both match the model's class "
                f"{model_names[index]!r}"
            )
        source_of_model[index] = name
        matched[source_index] = index
    return matched, unmatched
