"""The synthetic CRM with known truth: ``generate`` writes deals, stage history, a config and truth.json
(parameters: synth.params; the process: synth.generator). Reads nothing of the other steps."""

from forecaster.synth.generator import generate

__all__ = ["generate"]
