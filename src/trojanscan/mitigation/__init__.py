"""Model patching: DeepInspect's fine-tuning with generated triggers, Neural Cleanse's unlearning, and pruning the
units a recovered trigger drives (ours)."""

from trojanscan.mitigation.patching import PatchResult, additive_stamper, finetune_with_triggers, mask_stamper
from trojanscan.mitigation.pruning import prune_trigger_units, pruning_layer

__all__ = ["PatchResult", "additive_stamper", "finetune_with_triggers", "mask_stamper", "prune_trigger_units",
           "pruning_layer"]
