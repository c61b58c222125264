"""The project's own embedded dataset: synthetic real/fake voices in the competition's layout."""

from ensemble.demo.plan import DemoSpec
from ensemble.demo.synth import generate_competition, render_test_clip, render_train_clip
from ensemble.demo.voices import Speaker, draw_speaker, synth_voice

__all__ = ["DemoSpec", "Speaker", "draw_speaker", "generate_competition", "render_test_clip", "render_train_clip",
           "synth_voice"]
