"""Options of the frame-matrix diffusion fill (METHOD.md sections 4 and 5).

``DiffusionConfig()`` holds the paper's settings. :data:`PRESETS` names three trade-offs between
quality and time; ``DiffusionConfig.from_preset("fast", steps=30)`` starts from one and overrides
single fields.

Timesteps below are DDPM training timesteps (0..999 for zeroscope), not step indices.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from framematrix.errors import InputError

DECODERS = ("zeroscope", "svd")
DTYPES = ("auto", "float32", "float16", "bfloat16")


@dataclass(frozen=True)
class DiffusionConfig:
    """How the frame matrix is denoised.

    Model (used by the backbone adapter, not by the sampler):
        model: Hugging Face id or local folder of the text-to-video model.
        decoder: ``"zeroscope"`` (the model's own VAE) or ``"svd"`` (the temporal VAE decoder of
            Stable Video Diffusion img2vid-xt, as in the reference, "for deflickering").
        decoder_model: id or folder of the SVD model for ``decoder="svd"`` (None: img2vid-xt).
        allow_download: let missing weights be fetched from the Hugging Face Hub; off by
            default, so a missing model stops with one line saying what to download.
        dtype: ``"auto"`` (fp16 on CUDA, fp32 on CPU), ``"float32"``, ``"float16"``, ``"bfloat16"``.
        device: ``"auto"`` (CUDA when available) or a torch device string.
        model_cpu_offload, vae_slicing: memory savers of the adapter.

    Guidance:
        prompt: text prompt; ``""`` works (unconditional content, guided away from the negative).
        negative_prompt: the reference's negative prompt.
        guidance: classifier-free guidance scale.
        guidance_early: if set, the scale used while ``t >= early_end`` (the authors' latest
            release uses 3.5 early and 7.5 late); ``None`` = ``guidance`` throughout (the paper).

    Schedule:
        steps: DDPM inference steps.
        resample: R, resampling passes per step while ``t >= frame_matrix_end``.
        resample_late: resampling passes once ``t < frame_matrix_end``. As in the reference,
            the comparison uses the step's own (larger) timestep t, which the reference's
            resampling function calls ``t_next``.
        frame_matrix_end: while ``t > frame_matrix_end`` every view is denoised and resampling
            alternates time and view axes; afterwards only the target eye(s) along time.
        multiview: multi-view mode (all views are outputs). It also holds whenever
            ``frame_matrix_end <= 0``; in this mode the effective ``frame_matrix_end`` is
            ``min(frame_matrix_end, 0)``.
        fix_last_view_begin: multi-view mode, from ``t <= fix_last_view_begin`` on: the anchor
            (last) view is first resampled alone ``last_view_resample`` times, then the other
            views ``multiview_resample`` times with the anchor held fixed, along time every
            ``multiview_time_every``-th resample and along the view axis otherwise (alternating
            forward and backward).
        reinject: disocclusion boundary re-injection while ``t > reinject_end``.
        reinject_soft_pixels: paste known pixels with the soft (Gaussian) pixel mask instead of
            the hard one during re-injection (the authors' latest release); default hard (paper).

    Masks (see :mod:`framematrix.fill.diffusion.masks`):
        erode: erosion of the pixel mask (square kernel side; 1 = none).
        box: side of the box filter that measures how much of a latent cell's surroundings is
            known.
        latent_threshold: box-filtered known fraction below which a latent is unknown.
        latent_threshold_early: if set, the threshold while ``t >= early_end`` (0.2 in the
            authors' latest release); ``None`` = ``latent_threshold`` throughout.
        early_end: timestep where the early guidance/threshold (if set) end (the reference's 500).
        soft_mask: side of the Gaussian that softens the latent mask inside the known area
            (0 or 1 = hard mask).

    Execution:
        seed: seed of the CPU ``torch.Generator`` that draws every noise tensor, so that CPU
            and GPU runs start from the same noise.
        views: if set, denoise only this many views of the matrix: evenly spaced, keeping both
            ends and the source view (the authors find 4 views competitive). ``None`` = all.
        batched: run the UNet on several videos per call (all active views, or all frames of
            a view-axis pass) and the VAE on several frames per call. ``False`` issues one video
            per UNet call and one view's frames per VAE call, in the reference's order. Both
            give the same result for the same noise (up to float rounding).
        batch_budget: the most videos in one UNet call (each video is ``[C, T, h, w]`` with T =
            frames for time-axis passes and T = views for view-axis passes; classifier-free
            guidance doubles the network batch inside the backbone). Lower it when memory is
            short: the time per step barely changes on a GPU once the GPU is busy.
        vae_batch: the most frames in one VAE decode or encode call, rounded down to whole
            videos (at least one video), so a temporal decoder always sees whole videos.
    """

    model: str = "cerspense/zeroscope_v2_576w"
    decoder: str = "zeroscope"
    decoder_model: str | None = None
    allow_download: bool = False
    prompt: str = ""
    negative_prompt: str = "low-quality, blurry, flickering, ghost"
    steps: int = 50
    guidance: float = 7.5
    guidance_early: float | None = None
    resample: int = 6
    resample_late: int = 2
    frame_matrix_end: int = 500
    multiview: bool = False
    fix_last_view_begin: int = 600
    last_view_resample: int = 2
    multiview_resample: int = 4
    multiview_time_every: int = 3
    erode: int = 3
    latent_threshold: float = 0.7
    latent_threshold_early: float | None = None
    early_end: int = 500
    box: int = 8
    soft_mask: int = 5
    reinject: bool = True
    reinject_end: int = 0
    reinject_soft_pixels: bool = False
    seed: int = 0
    views: int | None = None
    dtype: str = "auto"
    device: str = "auto"
    batched: bool = True
    batch_budget: int = 8
    window_overlap: int = 4
    vae_batch: int = 16
    model_cpu_offload: bool = False
    vae_slicing: bool = False

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> InputError:
            return InputError(f"diffusion config: {name}={getattr(self, name)!r} {why}")

        if self.decoder not in DECODERS:
            raise bad("decoder", f"must be one of {DECODERS}")
        if self.dtype not in DTYPES:
            raise bad("dtype", f"must be one of {DTYPES}")
        for name in ("steps", "batch_budget", "vae_batch", "erode", "box", "multiview_time_every"):
            if int(getattr(self, name)) < 1:
                raise bad(name, "must be >= 1")
        for name in (
            "resample",
            "resample_late",
            "last_view_resample",
            "multiview_resample",
            "soft_mask",
        ):
            if int(getattr(self, name)) < 0:
                raise bad(name, "must be >= 0")
        if self.soft_mask > 1 and self.soft_mask % 2 == 0:
            raise bad("soft_mask", "must be odd (a Gaussian kernel side)")
        for name in ("latent_threshold", "latent_threshold_early"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise bad(name, "must be in [0, 1]")
        if not 0 <= int(self.window_overlap) < 16:
            raise bad("window_overlap", "must be in 0..15 (frames shared by 16-frame windows)")
        if self.views is not None and self.views < 2:
            raise bad("views", "must be >= 2 (or None for all views)")

    @property
    def is_multiview(self) -> bool:
        """Multi-view mode: all views are outputs and the anchor view is fixed late."""
        return self.multiview or self.frame_matrix_end <= 0

    @property
    def effective_frame_matrix_end(self) -> int:
        return min(self.frame_matrix_end, 0) if self.is_multiview else self.frame_matrix_end

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> DiffusionConfig:
        """The preset ``name`` (a key of :data:`PRESETS`) with single fields overridden."""
        if name not in PRESETS:
            raise InputError(f"diffusion config: unknown preset {name!r}; one of {sorted(PRESETS)}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise InputError(f"diffusion config: unknown option(s) {unknown}")
        return replace(cls(), **{**PRESETS[name], **overrides})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Quality/time trade-offs of METHOD.md section 5. UNet videos per 16-frame stereo clip (SD-style
# DDPM timesteps, steps_offset 1; calls at batch_budget 8 in brackets): paper 2,073 (323) with 8
# views; fast 313 (73) and draft 176 (36) with 4 views. Multi-view: 3,493, 762 and 340 videos.
PRESETS: dict[str, dict[str, Any]] = {
    # The paper's schedule: 8 views (as built), 50 steps, R = 6 resamples (2 late).
    "paper": {},
    # 4 of the views (the authors find 4 "competitive"), half the steps, R = 2 keeps one time and
    # one view pass per step so the fill stays consistent across time and views.
    "fast": {
        "views": 4,
        "steps": 25,
        "resample": 2,
        "resample_late": 1,
        "last_view_resample": 1,
        "multiview_resample": 2,
    },
    # Previews: 4 views, 15 steps, one time and one view pass per step early, none late.
    "draft": {
        "views": 4,
        "steps": 15,
        "resample": 2,
        "resample_late": 0,
        "last_view_resample": 1,
        "multiview_resample": 2,
        "multiview_time_every": 2,
    },
}
