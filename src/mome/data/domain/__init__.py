"""Domain-randomised training data (SynthSeg / SynthStroke style): real anatomies and real lesion shapes,
random contrasts and scanner effects, generated on the fly. The benchmark generator (:mod:`mome.data.synth`)
keeps its role for the paper's tables."""
