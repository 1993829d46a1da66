"""ddpm-tui's engine: diffusion math, models, samplers, data, training and the run store.

Nothing here imports a UI library; the faces in ``ddpm_tui`` import this package.
"""
