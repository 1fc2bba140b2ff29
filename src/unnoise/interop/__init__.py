"""The ecosystem's models: diffusers folders as unnoise pipelines, and unnoise models as diffusers folders.

diffusers and transformers are imported only inside the functions that need them (``pip install 'unnoise[diffusers]'``).
"""
from .denoiser import PREDICTION_TYPES, DiffusersDenoiser
from .export import export_diffusers, scheduler_config_for
from .load import CLIPPromptEncoder, VAECodec, is_diffusers_folder, load_pipeline
from .schedule import FAMILIES, TIMESTEP_MODES, DiffusersSchedule, diffusers_betas
from .unet2d import DiffusersUNet2D
from .. import nets
from ..runs import register_loader

nets.register("diffusers-unet2d", DiffusersUNet2D)  # diffusers itself is imported only when one is built
register_loader(is_diffusers_folder, load_pipeline)  # unnoise.load reads diffusers folders

__all__ = ["CLIPPromptEncoder", "DiffusersDenoiser", "DiffusersSchedule", "DiffusersUNet2D", "FAMILIES", "PREDICTION_TYPES",
           "TIMESTEP_MODES", "VAECodec", "diffusers_betas", "export_diffusers", "is_diffusers_folder", "load_pipeline",
           "scheduler_config_for"]
