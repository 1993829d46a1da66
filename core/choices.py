"""The names a run's config may choose from, kept free of torch.

The math modules implement these (``schedules.py``, ``diffusion.py``, ``samplers.py``); the
config validates against them; the dashboard's new-run form offers them. Living here, apart
from the math, they can be imported by the UI process without loading torch.
"""

SCHEDULES = ("linear", "cosine", "quadratic", "sigmoid", "sigmoid-beta")
OBJECTIVES = ("eps", "x0", "v")
LOSSES = ("l2", "l1", "huber")
SAMPLERS = ("ddpm", "ddim", "dpmpp2m")
CONDITIONS = ("none", "class")  # what a model is conditioned on
DATASETS = ("mnist", "fashion", "scurve", "folder", "sines", "seq")
MODELS = ("unet", "mlp", "mlp_embed", "unet1d")
OPTIMIZERS = ("adam", "adamw")
LR_DECAYS = ("constant", "linear", "cosine")
# How a batch's timesteps are drawn: uniform, antithetic pairs t and T-1-t (the S-curve toy), or
# logit-normal (more of the middle of the chain, fewer of its two ends: Esser et al. 2024).
T_SAMPLINGS = ("uniform", "antithetic", "logit_normal")
# DDIM's eta: 0 is deterministic, 1 is DDPM's noise, above 1 re-noises the predicted x0 more
# (capped per step at the timestep's own variance, so large values all become the same sampler).
# DPM-Solver++'s: 0 is the ODE solver, 1 the reverse SDE, more draws more of each step's noise fresh.
ETA_SAMPLERS = ("ddim", "dpmpp2m")
# The ddpm sampler's fixed variance: the posterior's beta~_t, or beta_t (Ho et al.'s other choice).
DDPM_VARIANCES = ("posterior", "beta")
ETA_MAX = 10.0
# Classifier-free guidance scale: 0 unconditional, 1 conditional, above 1 guided.
GUIDANCE_MAX = 20.0
SEQUENCE_DATASETS = ("sines", "seq")  # 1-D sequences (C, L), trained with model=unet1d
# The reference image engine's options (see RunConfig): how a U-Net sees the step, and how a
# folder's images are read (auto: as image_channels says; rgb and l set image_channels).
TIME_EMBEDDINGS = ("sinusoidal", "random_fourier", "learned_fourier")
IMAGE_MODES = ("auto", "rgb", "l")
IMAGE_MODE_CHANNELS = {"rgb": 3, "l": 1}
