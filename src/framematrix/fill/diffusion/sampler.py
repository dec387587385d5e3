"""The frame-matrix sampler: RePaint-style denoising of V views x F frames (METHOD.md section 4).

The sampler knows the schedule and nothing about a network; any
:class:`~framematrix.fill.diffusion.backbone.VideoBackbone` runs it. Latents are
``[V, C, F, h, w]`` float32 (one video per view; the reference's extra batch axis is dropped).

One step at timestep ``t`` (``t_next`` = the next, smaller one):

1. denoise the active views along time (all while ``t > frame_matrix_end``, then the target
   eye(s)), keeping the prediction of the clean latents x0;
2. re-injection: decode x0 of the active views, paste the known warped pixels, encode again:
   the new known latents;
3. resampling: jump from ``t_next`` back to ``t`` with fresh noise, re-impose the known latents
   noised to ``t``, denoise one step again; passes along time, the view axis and the view axis
   reversed (see :func:`plan_schedule`);
4. compose: known latents noised to ``t_next`` (clean at the last step) replace the known area.

Every pass touches each latent at most once, so the reference's "average over the calls that
touched a latent" reduces to assignment here; latents a pass does not touch keep their value.

Execution is batched (several videos per UNet call) or one video per call in the reference's
order (``DiffusionConfig.batched``). All noise comes from one CPU ``torch.Generator`` in an order
that does not depend on batching: each video of a pass gets its own generator for the DDPM
step's noise, seeded from the main one. With a batch-invariant backbone both orders give the
same result up to float rounding, and CPU and GPU runs start from the same noise.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from framematrix.errors import InputError, ShapeError
from framematrix.fill.diffusion.backbone import VideoBackbone
from framematrix.fill.diffusion.config import DiffusionConfig
from framematrix.fill.diffusion.masks import FrameMatrixMasks, frame_matrix_masks
from framematrix.matrix import RIG_MODES, FrameMatrix

TIME = "time"
VIEW = "view"
VIEW_REVERSED = "view_reversed"


@dataclass(frozen=True)
class Pass:
    """One denoising pass over part of the frame matrix at one timestep.

    axis: ``"time"`` (one video per view in ``views``, its F frames as time), ``"view"`` (one
        video per frame index, the views in ``views`` in order as time) or ``"view_reversed"``
        (the same, views in reverse order).
    views: the views jumped back in noise and fed to the network.
    hold: views whose result is discarded (the multi-view anchor, held fixed).
    """

    axis: str
    views: tuple[int, ...]
    hold: tuple[int, ...] = ()

    def num_videos(self, num_frames: int) -> int:
        return len(self.views) if self.axis == TIME else num_frames

    def frames_per_video(self, num_frames: int) -> int:
        return num_frames if self.axis == TIME else len(self.views)


@dataclass(frozen=True)
class StepPlan:
    """What one sampling step does (see the module docstring for the four parts).

    denoise_views: views denoised along time in part 1 (and re-injected in part 2).
    reinject: whether part 2 runs.
    resample: the passes of part 3, in order (empty at the last step).
    guidance: classifier-free guidance scale of this step.
    early: whether the early latent mask applies (only with ``latent_threshold_early``).
    """

    index: int
    t: int
    t_next: int | None
    denoise_views: tuple[int, ...]
    reinject: bool
    resample: tuple[Pass, ...]
    guidance: float
    early: bool

    @property
    def passes(self) -> tuple[Pass, ...]:
        """Every UNet pass of the step: the part-1 denoise, then the resampling passes."""
        return (Pass(TIME, self.denoise_views), *self.resample)

    def num_videos(self, num_frames: int) -> int:
        """UNet videos of the step (one per call when run one by one)."""
        return sum(p.num_videos(num_frames) for p in self.passes)

    def num_calls(self, num_frames: int, batch_budget: int) -> int:
        """UNet calls of the step when at most ``batch_budget`` videos go in one call."""
        return sum(math.ceil(p.num_videos(num_frames) / batch_budget) for p in self.passes)


def _resample_passes(
    t: int,
    config: DiffusionConfig,
    num_views: int,
    targets: tuple[int, ...],
    anchor: int,
) -> tuple[Pass, ...]:
    # The reference skips resampling entirely when R = 0, multi-view stage included.
    if config.resample == 0:
        return ()
    all_views = tuple(range(num_views))
    end = config.effective_frame_matrix_end
    if config.is_multiview and end < t <= config.fix_last_view_begin:
        others = tuple(v for v in all_views if v != anchor)
        passes = [Pass(TIME, (anchor,))] * config.last_view_resample
        for i in range(config.multiview_resample):
            if (i + 1) % config.multiview_time_every == 0:
                # The anchor's time-axis result would be discarded: it is not computed.
                passes.append(Pass(TIME, others))
            elif i % 2 == 0:
                passes.append(Pass(VIEW, all_views, hold=(anchor,)))
            else:
                passes.append(Pass(VIEW_REVERSED, all_views, hold=(anchor,)))
        return tuple(passes)
    # As in the reference, the step's own timestep t decides (its resampling function names it
    # t_next): R while t >= end, R_late once t < end; both axes only while t > end.
    count = config.resample_late if t < end else config.resample
    if t > end:
        cycle = {0: Pass(TIME, all_views), 1: Pass(VIEW, all_views), 2: Pass(TIME, all_views)}
        cycle[3] = Pass(VIEW_REVERSED, all_views)
        return tuple(cycle[i % 4] for i in range(count))
    return tuple(Pass(TIME, targets) for _ in range(count))


def plan_schedule(
    timesteps: Sequence[int],
    config: DiffusionConfig,
    num_views: int,
    targets: Sequence[int],
    anchor: int | None = None,
) -> list[StepPlan]:
    """The whole sampling schedule, without running anything.

    timesteps: the scheduler's timesteps, decreasing. targets: the target eye view(s) (V-1 for
    left2right and right2left, both ends for middle2leftright). anchor: the multi-view view
    held fixed late (default: the last target).
    """
    targets = tuple(sorted(set(int(v) for v in targets)))
    if not targets or min(targets) < 0 or max(targets) >= num_views:
        raise ShapeError(f"target views {targets} must be in 0..{num_views - 1}")
    anchor = targets[-1] if anchor is None else int(anchor)
    end = config.effective_frame_matrix_end
    steps = [int(t) for t in timesteps]
    plans = []
    for index, t in enumerate(steps):
        t_next = steps[index + 1] if index + 1 < len(steps) else None
        early = t >= config.early_end
        guidance = config.guidance
        if early and config.guidance_early is not None:
            guidance = config.guidance_early
        plans.append(
            StepPlan(
                index=index,
                t=t,
                t_next=t_next,
                denoise_views=tuple(range(num_views)) if t > end else targets,
                reinject=config.reinject and t > config.reinject_end,
                resample=()
                if t_next is None
                else _resample_passes(t, config, num_views, targets, anchor),
                guidance=guidance,
                early=early and config.latent_threshold_early is not None,
            )
        )
    return plans


@dataclass
class StepStats:
    t: int
    unet_calls: int = 0
    unet_videos: int = 0
    vae_round_trips: int = 0
    seconds: float = 0.0


@dataclass
class SamplerStats:
    """Work done by one :meth:`FrameMatrixSampler.sample`.

    unet_calls: ``predict_noise`` calls; unet_videos: videos over all calls; unet_frames: frames
    over all videos (the network's work, before CFG doubling). vae_round_trips: views whose x0
    was decoded and re-encoded for re-injection; vae_decode_calls / vae_encode_calls /
    vae_frames: VAE calls and the frames they processed (each direction counted), the initial
    encode and the final decode included.
    """

    unet_calls: int = 0
    unet_videos: int = 0
    unet_frames: int = 0
    vae_round_trips: int = 0
    vae_decode_calls: int = 0
    vae_encode_calls: int = 0
    vae_frames: int = 0
    seconds: float = 0.0
    per_step: list[StepStats] = field(default_factory=list)


@dataclass
class SamplerResult:
    """Output of :meth:`FrameMatrixSampler.sample`.

    latents: ``[V', C, F, h, w]`` float32, the final latents of the denoised views (V' = the
        matrix views used, ``matrix_views``). Only the outputs are fully denoised: in stereo
        mode the views other than the eyes stop being denoised at ``frame_matrix_end``.
    known_latents: ``[V', C, F, h, w]`` float32, the known latents after the last re-injection.
    images: ``[N, F, H, W, 3]`` float32 in [0, 1], the decoded output views (``output_views``):
        the two end views in stereo mode, every used view in multi-view mode.
    matrix_views: matrix view index of each latent row.
    output_views: matrix view index of each decoded view.
    left_view, right_view: matrix indices of the left and right eye.
    masks: the masks of the used views (:class:`FrameMatrixMasks`).
    """

    latents: torch.Tensor
    known_latents: torch.Tensor
    images: torch.Tensor
    matrix_views: list[int]
    output_views: list[int]
    left_view: int
    right_view: int
    masks: FrameMatrixMasks
    stats: SamplerStats
    plan: list[StepPlan]

    def view_images(self, view: int) -> torch.Tensor:
        """Decoded video of matrix view ``view``: ``[F, H, W, 3]`` float32 in [0, 1]."""
        if view not in self.output_views:
            raise ShapeError(f"view {view} was not decoded; decoded views: {self.output_views}")
        return self.images[self.output_views.index(view)]

    def eyes(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Left and right eye videos, each ``[F, H, W, 3]`` float32 in [0, 1]."""
        return self.view_images(self.left_view), self.view_images(self.right_view)


def select_views(num_views: int, count: int | None, source_view: int) -> list[int]:
    """Evenly spaced views keeping both ends and the source (all views if ``count`` is None).

    Returns sorted matrix view indices; one more than ``count`` when the source is neither an
    end nor replaceable (count = 2 with a middle source).
    """
    if count is None or count >= num_views:
        return list(range(num_views))
    chosen = sorted({round(i * (num_views - 1) / (count - 1)) for i in range(count)})
    if source_view not in chosen:
        interior = [v for v in chosen if v not in (0, num_views - 1)]
        if interior:
            chosen.remove(min(interior, key=lambda v: abs(v - source_view)))
        chosen = sorted([*chosen, source_view])
    return chosen


def _rig_views(
    num_views: int,
    mode: str,
    offsets: torch.Tensor | None,
    source_view: int,
) -> tuple[tuple[int, ...], int, int]:
    """(target views, left eye, right eye) in the local view indexing."""
    if offsets is not None:
        left = int(torch.argmin(offsets).item())
        right = int(torch.argmax(offsets).item())
    elif mode == "right2left":
        left, right = num_views - 1, 0
    else:
        left, right = 0, num_views - 1
    targets = tuple(sorted({left, right} - {source_view}))
    if not targets:
        raise ShapeError(f"no target eye: both ends of the rig are the source view {source_view}")
    return targets, left, right


def _view_plan(
    num_views: int,
    config: DiffusionConfig,
    mode: str,
    offsets: torch.Tensor | None,
    source_view: int,
) -> tuple[list[int], tuple[int, ...], int, int, list[int]]:
    """(used matrix views, target views, left, right, outputs); all but ``used`` are indices
    into ``used``."""
    used = select_views(num_views, config.views, source_view)
    local_source = used.index(source_view)
    local_offsets = None if offsets is None else offsets[used]
    targets, left, right = _rig_views(len(used), mode, local_offsets, local_source)
    outputs = list(range(len(used))) if config.is_multiview else sorted({left, right})
    return used, targets, left, right, outputs


def decoded_views(matrix: FrameMatrix, config: DiffusionConfig) -> list[int]:
    """Matrix indices of the views :meth:`FrameMatrixSampler.sample` will decode (and the fill
    replaces): the two eyes, or every used view in multi-view mode. Sorted."""
    offsets = matrix.offsets.detach().float().cpu()
    used, _, _, _, outputs = _view_plan(
        matrix.num_views, config, matrix.mode, offsets, int(matrix.source_view)
    )
    return sorted(used[v] for v in outputs)


class FrameMatrixSampler:
    """Runs the schedule of METHOD.md section 4 with any :class:`VideoBackbone`.

    ``FrameMatrixSampler(backbone, config).sample(matrix)`` returns a :class:`SamplerResult`.
    """

    def __init__(self, backbone: VideoBackbone, config: DiffusionConfig | None = None) -> None:
        missing = [
            name
            for name in ("latent_channels", "downscale", "scheduler", "predict_noise", "encode")
            if not hasattr(backbone, name)
        ]
        if missing or not hasattr(backbone, "decode"):
            raise TypeError(f"backbone lacks VideoBackbone members: {missing or ['decode']}")
        self.backbone = backbone
        self.config = config or DiffusionConfig()
        try:
            params = inspect.signature(backbone.decode).parameters
        except (TypeError, ValueError):
            params = {}
        # A temporal decoder (SVD's) must know where one video ends; pass it when it asks.
        self._decode_takes_frames = "num_frames" in params
        self._generator: torch.Generator | None = None
        self._vae_generator: torch.Generator | None = None
        self.stats = SamplerStats()
        self._step_stats: StepStats | None = None

    # ------------------------------------------------------------------ public entry point
    @torch.no_grad()
    def sample(
        self,
        matrix: FrameMatrix | torch.Tensor,
        masks: torch.Tensor | None = None,
        *,
        mode: str | None = None,
        source_view: int | None = None,
        generator: torch.Generator | int | None = None,
        progress: bool = True,
        callback: Callable[[int, int], None] | None = None,
    ) -> SamplerResult:
        """Fill the holes of a frame matrix.

        matrix: a :class:`FrameMatrix`, or images ``[V, F, H, W, 3]`` float in [0, 1] with
            ``masks`` ``[V, F, H, W]`` bool (True = known), ``mode`` one of the rig modes
            (default left2right) and optionally ``source_view``. H and W must be multiples of
            the backbone's downscale (resize the matrix to the model's size first).
        generator: CPU ``torch.Generator`` or int seed; default ``config.seed``.
        progress: tqdm bar; callback: called as ``callback(step, total)`` after each step
            (step counts from 1).
        """
        images, masks, offsets, mode, source_view = self._inputs(matrix, masks, mode, source_view)
        config = self.config
        backbone = self.backbone
        device = torch.device(getattr(backbone, "device", "cpu"))
        downscale = int(backbone.downscale)
        num_views, num_frames, height, width = masks.shape
        if height % downscale or width % downscale:
            raise ShapeError(
                f"frame matrix is {height}x{width}: height and width must be multiples of the "
                f"backbone's downscale {downscale} (resize the matrix to the model size)"
            )

        used, targets, left, right, outputs = _view_plan(
            num_views, config, mode, offsets, source_view
        )

        self._generator = self._make_generator(generator)
        # VAE posterior noise comes from its own stream so that chunking cannot shift the
        # main stream.
        self._vae_generator = torch.Generator("cpu").manual_seed(self._draw_seed())
        self.stats = SamplerStats()
        started = time.perf_counter()

        images = images[used].to(device=device, dtype=torch.float32)
        masks = masks[used].to(device)
        mask_set = frame_matrix_masks(
            masks,
            downscale=downscale,
            erode=config.erode,
            box=config.box,
            threshold=config.latent_threshold,
            soft=config.soft_mask,
            threshold_early=config.latent_threshold_early,
            pixel_soft=config.reinject_soft_pixels,
        )
        # [V, F, 3, H, W] in [0, 1], holes (and the eroded rim) zeroed.
        warped = (images * mask_set.pixel[..., None]).permute(0, 1, 4, 2, 3).contiguous()
        paste_mask = mask_set.pixel_soft if config.reinject_soft_pixels else mask_set.pixel
        paste_mask = paste_mask[:, :, None]
        latent_mask = mask_set.latent[:, None]  # [V, 1, F, h, w]
        latent_mask_early = (
            None if mask_set.latent_early is None else mask_set.latent_early[:, None]
        )

        known = self._encode_videos(warped * 2 - 1)
        cond = backbone.encode_prompt(config.prompt, config.negative_prompt)
        scheduler = backbone.scheduler
        scheduler.set_timesteps(config.steps)
        timesteps = [int(t) for t in scheduler.timesteps]
        plan = plan_schedule(timesteps, config, len(used), targets)

        latents = self._randn(known.shape, device)
        bar = tqdm(total=len(plan), desc="frame matrix", unit="step", disable=not progress)
        try:
            for step in plan:
                step_started = time.perf_counter()
                self._step_stats = StepStats(t=step.t)
                mask = latent_mask_early if step.early else latent_mask
                # 1. denoise the active views along time
                views = list(step.denoise_views)
                prev, x0 = self._denoise(latents[views], step.t, cond, step.guidance)
                latents[views] = prev
                # 2. disocclusion boundary re-injection
                if step.reinject:
                    known[views] = self._reinject(x0, views, warped, paste_mask)
                # 3. resampling
                if step.t_next is not None:
                    for resample_pass in step.resample:
                        latents = self._run_pass(
                            latents, resample_pass, step, known, mask, cond, num_frames
                        )
                # 4. compose known and generated latents
                if step.t_next is None:
                    known_now = known
                else:
                    known_now = self._add_noise(known, step.t_next, device)
                latents = self._compose(latents, known_now, mask)

                self._step_stats.seconds = time.perf_counter() - step_started
                self.stats.per_step.append(self._step_stats)
                bar.set_postfix(t=step.t, unet_calls=self.stats.unet_calls)
                bar.update(1)
                if callback is not None:
                    callback(step.index + 1, len(plan))
        finally:
            bar.close()
            self._step_stats = None

        decoded = self._decode_videos(latents[outputs])  # [N, F, 3, H, W] in [-1, 1]
        out_images = ((decoded / 2 + 0.5).clamp(0, 1)).permute(0, 1, 3, 4, 2).float()
        self.stats.seconds = time.perf_counter() - started
        return SamplerResult(
            latents=latents,
            known_latents=known,
            images=out_images,
            matrix_views=used,
            output_views=[used[v] for v in outputs],
            left_view=used[left],
            right_view=used[right],
            masks=mask_set,
            stats=self.stats,
            plan=plan,
        )

    # ------------------------------------------------------------------ inputs and noise
    def _inputs(
        self,
        matrix: FrameMatrix | torch.Tensor,
        masks: torch.Tensor | None,
        mode: str | None,
        source_view: int | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, str, int]:
        if isinstance(matrix, FrameMatrix):
            if masks is not None:
                raise InputError("sample(): pass masks only with an images tensor, not a matrix")
            return (
                matrix.images,
                matrix.masks,
                matrix.offsets.detach().float().cpu(),
                matrix.mode,
                int(matrix.source_view),
            )
        images = matrix
        if masks is None:
            raise InputError("sample(): images given without masks")
        if images.ndim != 5 or images.shape[-1] != 3:
            raise ShapeError(f"images must be [V, F, H, W, 3], got {tuple(images.shape)}")
        if tuple(masks.shape) != tuple(images.shape[:4]):
            raise ShapeError(
                f"masks must be [V, F, H, W] = {tuple(images.shape[:4])}, got {tuple(masks.shape)}"
            )
        if images.shape[0] < 2:
            raise ShapeError(f"a frame matrix needs at least 2 views, got {images.shape[0]}")
        mode = mode or "left2right"
        if mode not in RIG_MODES:
            raise InputError(f"mode must be one of {RIG_MODES}, got {mode!r}")
        num_views = int(images.shape[0])
        if source_view is None:
            source_view = num_views // 2 if mode == "middle2leftright" else 0
        return images, masks.bool(), None, mode, int(source_view)

    def _make_generator(self, generator: torch.Generator | int | None) -> torch.Generator:
        if isinstance(generator, torch.Generator):
            if generator.device.type != "cpu":
                raise InputError("sample(): the generator must be a CPU torch.Generator")
            return generator
        seed = self.config.seed if generator is None else int(generator)
        return torch.Generator("cpu").manual_seed(seed)

    def _draw_seed(self) -> int:
        return int(torch.randint(0, 2**62, (1,), generator=self._generator).item())

    def _randn(self, shape: Sequence[int], device: torch.device) -> torch.Tensor:
        noise = torch.randn(tuple(shape), generator=self._generator, dtype=torch.float32)
        return noise.to(device)

    def _add_noise(self, clean: torch.Tensor, t: int, device: torch.device) -> torch.Tensor:
        noise = self._randn(clean.shape, device)
        timestep = torch.tensor([int(t)], dtype=torch.long, device=device)
        return self.backbone.scheduler.add_noise(clean, noise, timestep)

    @staticmethod
    def _compose(latents: torch.Tensor, known: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Known latents where the (soft) latent mask says so: ``z (1 - m) + known m``."""
        return latents * (1 - mask) + known * mask

    def _jump(self, latents: torch.Tensor, t: int, t_next: int) -> torch.Tensor:
        """Noise latents at ``t_next`` back up to ``t`` (one forward-diffusion jump)."""
        # The reference multiplies (1 - beta) over betas[t_next .. t - 1].
        betas = self.backbone.scheduler.betas.detach().double().cpu()
        kept = float(torch.prod(1 - betas[int(t_next) : int(t)]))
        noise = self._randn(latents.shape, latents.device)
        return math.sqrt(kept) * latents + math.sqrt(1 - kept) * noise

    # ------------------------------------------------------------------ network passes
    def _chunks(self, count: int, per_call: int) -> list[slice]:
        return [slice(i, min(i + per_call, count)) for i in range(0, count, per_call)]

    def _denoise(
        self,
        videos: torch.Tensor,
        t: int,
        cond: object,
        guidance: float,
        reverse_time: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One DDPM step of ``videos`` ``[B, C, T, h, w]`` at ``t``: (prev_sample, x0).

        reverse_time: the network sees each video's time axis reversed (the view axis run from
        the last view to the first); results come back in the original order.
        """
        count = int(videos.shape[0])
        scheduler = self.backbone.scheduler
        # One generator per video, seeded in video order, whatever the batching.
        seeds = torch.randint(0, 2**62, (count,), generator=self._generator).tolist()
        per_call = self.config.batch_budget if self.config.batched else 1
        prev_parts, x0_parts = [], []
        for part in self._chunks(count, per_call):
            chunk = videos[part].contiguous()
            net_input = chunk.flip(2) if reverse_time else chunk
            eps = self.backbone.predict_noise(net_input, int(t), cond, float(guidance))
            if tuple(eps.shape) != tuple(chunk.shape):
                raise ShapeError(
                    f"backbone.predict_noise returned {tuple(eps.shape)} for input "
                    f"{tuple(chunk.shape)}"
                )
            eps = eps.float()
            if reverse_time:
                eps = eps.flip(2)
            generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds[part]]
            out = scheduler.step(eps, int(t), chunk, generator=generators)
            prev_parts.append(out.prev_sample.float())
            x0_parts.append(out.pred_original_sample.float())
            self._count_unet(chunk)
        return _cat(prev_parts), _cat(x0_parts)

    def _count_unet(self, chunk: torch.Tensor) -> None:
        self.stats.unet_calls += 1
        self.stats.unet_videos += int(chunk.shape[0])
        self.stats.unet_frames += int(chunk.shape[0] * chunk.shape[2])
        if self._step_stats is not None:
            self._step_stats.unet_calls += 1
            self._step_stats.unet_videos += int(chunk.shape[0])

    def _run_pass(
        self,
        latents: torch.Tensor,
        resample_pass: Pass,
        step: StepPlan,
        known: torch.Tensor,
        mask: torch.Tensor,
        cond: object,
        num_frames: int,
    ) -> torch.Tensor:
        """One resampling pass: jump ``t_next -> t``, re-impose the known area, denoise."""
        assert step.t_next is not None
        views = list(resample_pass.views)
        jumped = self._jump(latents[views], step.t, step.t_next)
        sub_mask = mask[views]
        noisy_known = self._add_noise(known[views], step.t, jumped.device)
        jumped = self._compose(jumped, noisy_known, sub_mask)
        if resample_pass.axis == TIME:
            prev, _ = self._denoise(jumped, step.t, cond, step.guidance)
        else:
            # [V', C, F, h, w] -> one video per frame: [F, C, V', h, w]
            by_frame = jumped.permute(2, 1, 0, 3, 4)
            prev, _ = self._denoise(
                by_frame, step.t, cond, step.guidance, reverse_time=resample_pass.axis != VIEW
            )
            prev = prev.permute(2, 1, 0, 3, 4)
        updated = latents.clone()
        updated[views] = prev
        for view in resample_pass.hold:
            updated[view] = latents[view]
        return updated

    # ------------------------------------------------------------------ VAE round trips
    def _videos_per_vae_call(self, num_frames: int) -> int:
        if not self.config.batched:
            return 1
        return max(1, self.config.vae_batch // max(1, num_frames))

    def _decode_videos(self, latents: torch.Tensor) -> torch.Tensor:
        """``[A, C, F, h, w]`` latents -> ``[A, F, 3, H, W]`` images in [-1, 1]."""
        count, channels, num_frames, lat_h, lat_w = latents.shape
        frames = latents.permute(0, 2, 1, 3, 4)  # [A, F, C, h, w]
        parts = []
        for part in self._chunks(count, self._videos_per_vae_call(num_frames)):
            flat = frames[part].reshape(-1, channels, lat_h, lat_w).contiguous()
            if self._decode_takes_frames:
                decoded = self.backbone.decode(flat, num_frames=num_frames)
            else:
                decoded = self.backbone.decode(flat)
            decoded = decoded.float()
            parts.append(decoded.reshape(-1, num_frames, *decoded.shape[1:]))
            self.stats.vae_decode_calls += 1
            self.stats.vae_frames += int(flat.shape[0])
        return _cat(parts)

    def _encode_videos(self, images: torch.Tensor) -> torch.Tensor:
        """``[A, F, 3, H, W]`` images in [-1, 1] -> ``[A, C, F, h, w]`` scaled latents."""
        count, num_frames = images.shape[:2]
        parts = []
        for part in self._chunks(count, self._videos_per_vae_call(num_frames)):
            flat = images[part].reshape(-1, *images.shape[2:]).contiguous()
            encoded = self.backbone.encode(flat, generator=self._vae_generator).float()
            parts.append(encoded.reshape(-1, num_frames, *encoded.shape[1:]))
            self.stats.vae_encode_calls += 1
            self.stats.vae_frames += int(flat.shape[0])
        return _cat(parts).permute(0, 2, 1, 3, 4).contiguous()

    def _reinject(
        self,
        x0: torch.Tensor,
        views: Sequence[int],
        warped: torch.Tensor,
        paste_mask: torch.Tensor,
    ) -> torch.Tensor:
        """New known latents of ``views``: decode x0, paste the known warped pixels, encode.

        x0: ``[A, C, F, h, w]`` for the A views; warped: ``[V, F, 3, H, W]`` in [0, 1];
        paste_mask: ``[V, F, 1, H, W]`` in [0, 1]. Returns ``[A, C, F, h, w]``. Runs chunk by
        chunk, so only one chunk of full-resolution frames exists at a time.
        """
        count, num_frames = int(x0.shape[0]), int(x0.shape[2])
        parts = []
        for part in self._chunks(count, self._videos_per_vae_call(num_frames)):
            chunk_views = list(views[part])
            decoded = self._decode_videos(x0[part])
            decoded = decoded.mul_(0.5).add_(0.5).clamp_(0, 1)
            weight = paste_mask[chunk_views].expand_as(decoded)
            pasted = torch.lerp(decoded, warped[chunk_views], weight)
            parts.append(self._encode_videos(pasted.mul_(2).sub_(1)))
        self.stats.vae_round_trips += count
        if self._step_stats is not None:
            self._step_stats.vae_round_trips += count
        return _cat(parts)


def _cat(parts: list[torch.Tensor]) -> torch.Tensor:
    """``torch.cat`` along dim 0 without copying a single part."""
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def fill_matrix_diffusion(
    matrix: FrameMatrix,
    backbone: VideoBackbone,
    config: DiffusionConfig | None = None,
    *,
    progress: bool = True,
    callback: Callable[[int, int], None] | None = None,
    generator: torch.Generator | int | None = None,
) -> FrameMatrix:
    """Fill a frame matrix's output views with a video diffusion backbone.

    matrix: ``FrameMatrix`` at a size whose sides are multiples of ``backbone.downscale``
    (320x576 for zeroscope). Returns a copy whose output views (the two eyes; every used view
    in multi-view mode) hold the decoded videos, ``[F, H, W, 3]`` float32 in [0, 1], at the
    matrix's resolution. Masks are unchanged (True still marks the warped pixels), so a
    composite can paste the known pixels back at full resolution. Views not decoded keep their
    warped images with holes. ``generator`` defaults to ``config.seed``.
    """
    config = config or DiffusionConfig()
    result = FrameMatrixSampler(backbone, config).sample(
        matrix,
        generator=config.seed if generator is None else generator,
        progress=progress,
        callback=callback,
    )
    images = matrix.images.clone()
    for row, view in enumerate(result.output_views):
        images[view] = result.images[row].to(device=images.device, dtype=images.dtype)
    return matrix.with_images(images)
