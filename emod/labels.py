"""The canonical emotion label order: the one definition every model, message and report uses."""

LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
LABEL_INDEX: dict[str, int] = {name: i for i, name in enumerate(LABELS)}
