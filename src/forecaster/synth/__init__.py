"""The synthetic CRM with known truth: ``generate`` writes deals, stage history, a config and truth.json
(parameters: synth.params; the process: synth.process; what real pipelines add: synth.effects; the files:
synth.generator). Reads nothing of the other steps."""

from forecaster.synth.effects import Effects, realistic
from forecaster.synth.generator import generate

__all__ = ["Effects", "generate", "realistic"]
