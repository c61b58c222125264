"""Audio: decode and resample (`load`), crop/pad/window (`clip`), test-like augmentation (`augment`,
`dsp`) and the shared test-like validation set (`testlike`). numpy, soundfile and soxr only."""
