"""The four stages (and the optional mqtt stage), one process each. :data:`STAGE_CLASSES` maps a stage name to its module and class."""

STAGE_CLASSES = {
    "capture": "emod.stages.capture:CaptureStage",
    "infer": "emod.stages.infer:InferStage",
    "display": "emod.stages.display:DisplayStage",
    "power": "emod.stages.power:PowerStage",
    "mqtt": "emod.stages.mqtt:MqttStage",  # only with [mqtt] enabled
}


def load_stage_class(name: str):
    import importlib

    if name not in STAGE_CLASSES:
        raise ValueError(f"unknown stage {name!r} (stages: {', '.join(STAGE_CLASSES)})")
    module, cls = STAGE_CLASSES[name].split(":")
    return getattr(importlib.import_module(module), cls)
