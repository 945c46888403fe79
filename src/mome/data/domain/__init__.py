"""Domain-randomised training data (SynthSeg / SynthStroke style): real anatomies and real lesion shapes,
random contrasts and scanner effects, generated on the fly. The benchmark generator (:mod:`mome.data.synth`)
keeps its role for the paper's tables."""

# Shares of generated volumes drawn without a lesion / with fully random label intensities; the defaults of
# both the generator (GeneratorConfig) and training (TrainConfig.domain_*), kept here so they cannot drift.
P_NO_LESION = 0.30
P_RANDOM_CONTRAST = 0.15
