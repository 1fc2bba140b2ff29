"""Writing an unnoise model as a diffusers folder that ``DDPMPipeline`` / ``DDIMPipeline`` load and sample.

What can be exported, and why the rest cannot:

* the network must be ``diffusers-unet2d`` (:class:`DiffusersUNet2D`): its weights *are* a ``UNet2DModel``.
  unnoise's own U-Net, DiT, MLP and DiffWave have no diffusers class with the same layers;
* the process must be ``vp`` and the schedule a discrete VP one (``ddpm``, ``cosine``, ``scaled_linear``,
  ``sigmoid`` or any betas): diffusers' DDPM/DDIM schedulers are that Markov chain with integer timesteps.
  VE (Karras, log-linear) and flow schedules have no DDPM scheduler;
* the parameterization must be ``eps``, ``v`` or ``x0`` (``prediction_type`` epsilon / v_prediction / sample):
  with ``process="vp"`` unnoise feeds the network ``x_t`` and reads eps / v / x_0, as diffusers does.  ``edm`` and
  ``flow`` preconditionings scale input and output in ways no diffusers scheduler applies;
* class-conditional models are written (``num_class_embeds = num_classes + 1``, ``null_class`` in the unet config,
  readable by :func:`unnoise.interop.load_pipeline` with guidance), but diffusers has no class-conditional
  ``UNet2DModel`` pipeline, so ``DDPMPipeline`` cannot drive them; text- and latent-conditioned runs are not exported.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile

from .. import io, schedules
from .unet2d import DiffusersUNet2D, _schedule_from

_PREDICTION = {"eps": "epsilon", "v": "v_prediction", "x0": "sample"}
_NAMED_BETAS = {"ddpm": "linear", "linear": "linear", "scaled_linear": "scaled_linear", "sigmoid": "sigmoid"}


def scheduler_config_for(schedule, prediction_type: str = "epsilon") -> dict:
    """A ``DDPMScheduler`` config with the same betas as an unnoise discrete VP schedule.

    ``ddpm`` / ``scaled_linear`` / ``sigmoid`` map to the named ``beta_schedule`` with the same end points,
    ``cosine`` with ``s = 0.008, max_beta = 0.999`` to ``squaredcos_cap_v2``, anything else to ``trained_betas``.
    ``clip_sample`` is off (unnoise does not clip), ``timestep_spacing`` is the schedule's (``trailing`` for
    ``karras``, which a DDPM scheduler cannot express).
    """
    if not isinstance(schedule, schedules.DiscreteVP):
        raise ValueError(f"only discrete VP schedules (ddpm, cosine, scaled_linear, sigmoid) export to diffusers; "
                         f"{type(schedule).__name__} has no DDPM scheduler")
    kw = getattr(schedule, "_kwargs", {})
    cfg = {"_class_name": "DDPMScheduler", "num_train_timesteps": schedule.num_steps, "prediction_type": prediction_type,
           "clip_sample": False, "variance_type": "fixed_small", "steps_offset": 0,
           "timestep_spacing": schedule.spacing if schedule.spacing in ("leading", "trailing", "linspace") else "trailing"}
    name = getattr(schedule, "name", "")
    if name in _NAMED_BETAS:
        cfg.update(beta_schedule=_NAMED_BETAS[name], beta_start=kw["beta_start"], beta_end=kw["beta_end"])
    elif name == "cosine" and kw.get("s") == 0.008 and kw.get("max_beta") == 0.999:
        cfg.update(beta_schedule="squaredcos_cap_v2")
    else:
        cfg.update(beta_schedule="linear", trained_betas=[float(b) for b in schedule.betas])
    try:
        import diffusers  # optional dependency ('unnoise[diffusers]'): its version is recorded when present
        cfg["_diffusers_version"] = diffusers.__version__
    except ImportError:
        pass
    return cfg


def check_export_dir(out_dir, overwrite: bool = False) -> bool:
    """Whether ``out_dir`` may be written: True when it holds an earlier export that ``overwrite`` replaces, False
    when it is new or empty; a one-line ValueError otherwise (nothing but a diffusers folder is ever replaced)."""
    out_dir = os.fspath(out_dir)
    if not os.path.exists(out_dir) or (os.path.isdir(out_dir) and not os.listdir(out_dir)):
        return False
    if not overwrite:
        raise ValueError(f"{out_dir} already exists; choose a new folder (or overwrite=True / --overwrite to replace "
                         "an earlier export)")
    if not os.path.isfile(os.path.join(out_dir, "model_index.json")):
        raise ValueError(f"{out_dir} exists and is not a diffusers folder (no model_index.json); it is not replaced: "
                         "choose a new folder")
    return True


def export_diffusers(denoiser, schedule, out_dir, overwrite: bool = False) -> str:
    """Write ``denoiser`` (an :class:`unnoise.Denoiser` over a ``diffusers-unet2d`` network) and its ``schedule`` as
    a diffusers ``DDPMPipeline`` folder: ``unet/`` (config + safetensors), ``scheduler/`` (a ``DDPMScheduler`` with
    the schedule's betas and the prediction type), ``model_index.json``.

    The folder is written to a temporary sibling and renamed into place, so ``out_dir`` either does not exist or
    is complete.  An existing non-empty ``out_dir`` is refused, unless ``overwrite`` and it is a diffusers folder
    (it has ``model_index.json``): that one is replaced once the new folder is complete.  Returns ``out_dir``.
    See the module docstring for which runs can be exported.
    """
    net = getattr(denoiser, "net", None)
    if not isinstance(net, DiffusersUNet2D):
        raise ValueError(f"only models trained with --net diffusers-unet2d export to diffusers (this one is "
                         f"{type(net).__name__}: unnoise's own networks have no diffusers counterpart)")
    if getattr(denoiser, "process", None) != "vp" or denoiser.parameterization not in _PREDICTION:
        raise ValueError(f"a diffusers DDPM scheduler needs process 'vp' and parameterization eps, v or x0; this model "
                         f"is process {denoiser.process!r}, parameterization {denoiser.parameterization!r}")
    sched_cfg = scheduler_config_for(schedule, _PREDICTION[denoiser.parameterization])
    trained = _schedule_from(net.config["schedule"])
    if trained.num_steps != schedule.num_steps or not bool(
            ((trained.sigmas - schedule.sigmas).abs() <= 1e-5 * schedule.sigmas).all()):
        raise ValueError("the schedule differs from the one the network maps sigma -> timestep with "
                         f"({net.config['schedule']}); export with the run's own schedule")
    out_dir = os.fspath(out_dir)
    replace = check_export_dir(out_dir, overwrite)
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        net.unet.save_pretrained(os.path.join(tmp, "unet"), safe_serialization=True)
        if net.num_classes:  # unnoise's convention, read back by load_pipeline (diffusers ignores the key)
            cfg_path = os.path.join(tmp, "unet", "config.json")
            with open(cfg_path) as fh:
                unet_cfg = json.load(fh)
            unet_cfg["null_class"] = net.num_classes
            with open(cfg_path, "w") as fh:
                json.dump(unet_cfg, fh, indent=2)
        os.makedirs(os.path.join(tmp, "scheduler"))
        with open(os.path.join(tmp, "scheduler", "scheduler_config.json"), "w") as fh:
            json.dump(sched_cfg, fh, indent=2)
        index = {"_class_name": "DDPMPipeline", "_diffusers_version": sched_cfg.get("_diffusers_version", ""),
                 "unet": ["diffusers", "UNet2DModel"], "scheduler": ["diffusers", "DDPMScheduler"]}
        with open(os.path.join(tmp, "model_index.json"), "w") as fh:
            json.dump(index, fh, indent=2)
        for root, dirs, files in os.walk(tmp):  # mkdtemp and save_pretrained's own temporaries are private (0700)
            os.chmod(root, io.DIR_MODE)
            for name in files:
                os.chmod(os.path.join(root, name), io.FILE_MODE)
        old = None
        if replace:  # the earlier export goes aside only now that the new one is complete
            old = tempfile.mkdtemp(prefix=".export-old-", dir=parent)
            os.replace(out_dir, os.path.join(old, "folder"))
        elif os.path.isdir(out_dir):
            os.rmdir(out_dir)  # empty (checked above)
        try:
            os.replace(tmp, out_dir)
        except BaseException:
            if old is not None:  # put the earlier export back
                os.replace(os.path.join(old, "folder"), out_dir)
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return out_dir
