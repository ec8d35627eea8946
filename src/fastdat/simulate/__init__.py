"""Stage 1 of the data's path: phantoms and SPECT physics."""
