"""Model patching: DeepInspect's fine-tuning with generated triggers, Neural Cleanse's unlearning."""

from trojanscan.mitigation.patching import PatchResult, additive_stamper, finetune_with_triggers, mask_stamper

__all__ = ["PatchResult", "additive_stamper", "finetune_with_triggers", "mask_stamper"]
