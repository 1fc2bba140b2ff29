"""The ecosystem's models: diffusers folders as unnoise pipelines, and unnoise models as diffusers folders.

diffusers and transformers are imported only inside the functions that need them (``pip install 'unnoise[diffusers]'``).
"""
from .denoiser import PREDICTION_TYPES, DiffusersDenoiser
from .load import CLIPPromptEncoder, VAECodec, is_diffusers_folder, load_pipeline
from .schedule import FAMILIES, TIMESTEP_MODES, DiffusersSchedule, diffusers_betas

__all__ = ["CLIPPromptEncoder", "DiffusersDenoiser", "DiffusersSchedule", "FAMILIES", "PREDICTION_TYPES",
           "TIMESTEP_MODES", "VAECodec", "diffusers_betas", "is_diffusers_folder", "load_pipeline"]
