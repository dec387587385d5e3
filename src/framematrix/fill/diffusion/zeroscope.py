"""zeroscope_v2_576w (a ModelScope text-to-video UNet3D) as a :class:`VideoBackbone`.

Loads the diffusers layout of ``cerspense/zeroscope_v2_576w`` (``unet/``, ``vae/``,
``text_encoder/``, ``tokenizer/``, ``scheduler/``) from a local folder or from the Hugging Face
cache, never from the network unless asked: on a machine without the weights the user gets one
line saying what to download, instead of a traceback from deep inside huggingface_hub.

Speed (METHOD.md section 5): every call is batched. ``predict_noise`` runs the unconditional and
conditional passes of all B videos in one UNet call (chunked by ``unet_batch`` videos where
memory is short), attention goes through torch's fused ``scaled_dot_product_attention``, and the
VAE encodes/decodes many frames per call (chunked by ``vae_batch`` frames). Optionally the
temporal VAE decoder of Stable Video Diffusion replaces the zeroscope decoder ("deflickering").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from framematrix.device import resolve_device, resolve_dtype
from framematrix.errors import ModelNotFoundError, ShapeError

ZEROSCOPE_ID = "cerspense/zeroscope_v2_576w"
SVD_ID = "stabilityai/stable-video-diffusion-img2vid-xt"

ZEROSCOPE_SUBFOLDERS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
# The file that must exist in each subfolder for it to be usable.
_CONFIG_FILES = {
    "unet": ("config.json",),
    "vae": ("config.json",),
    "text_encoder": ("config.json",),
    "tokenizer": ("vocab.json", "tokenizer.json"),
    "scheduler": ("scheduler_config.json",),
}
_WEIGHTED = ("unet", "vae", "text_encoder")

_ZEROSCOPE_HINT = (
    "about 3.7 GB; download it with `hf download {id} --include 'unet/*' 'vae/*' "
    "'text_encoder/*' 'tokenizer/*' 'scheduler/*' model_index.json` (older clients: "
    "`huggingface-cli download ...`) or pass a local folder in that layout with --model PATH"
)
_SVD_HINT = (
    "about 200 MB (fp16); it is a gated repository: accept its licence on huggingface.co, "
    "`hf auth login`, then `hf download {id} --include 'vae/*'`, or pass a folder holding vae/ "
    "with --decoder-model PATH, or use --decoder zeroscope"
)

Decoder = Literal["zeroscope", "svd"]
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


def _has_weights(folder: Path) -> bool:
    return any(folder.glob("*.safetensors")) or any(folder.glob("*.bin"))


def _missing_parts(root: Path, subfolders: tuple[str, ...]) -> list[str]:
    missing = []
    for sub in subfolders:
        names = _CONFIG_FILES.get(sub, ("config.json",))
        if not any((root / sub / name).is_file() for name in names):
            missing.append(f"{sub}/{names[0]}")
        elif sub in _WEIGHTED and not _has_weights(root / sub):
            missing.append(f"{sub}/ weights")
    return missing


def resolve_model_folder(
    model: str | Path,
    subfolders: tuple[str, ...],
    *,
    hint: str,
    allow_download: bool = False,
) -> Path:
    """A local folder holding ``subfolders`` of ``model`` (a folder or a Hugging Face id).

    Looks only at the local disk and the Hugging Face cache unless ``allow_download``; anything
    missing raises :class:`ModelNotFoundError` with one line naming the model and ``hint``
    (size and how to get it; ``{id}`` is replaced by the model id).
    """
    text = str(model)
    path = Path(text).expanduser()
    if path.is_dir():
        missing = _missing_parts(path, subfolders)
        if missing:
            raise ModelNotFoundError(
                f"{path}: incomplete model folder, missing {', '.join(missing)} "
                f"(expected the diffusers layout: {', '.join(s + '/' for s in subfolders)})"
            )
        return path
    if not _REPO_ID.match(text) or text.startswith((".", "~")):
        raise ModelNotFoundError(
            f"{text}: model folder not found (give a folder with "
            f"{', '.join(s + '/' for s in subfolders)} or a Hugging Face id)"
        )
    from huggingface_hub import snapshot_download

    patterns = [f"{sub}/*" for sub in subfolders] + ["model_index.json"]
    try:
        snapshot = Path(
            snapshot_download(text, allow_patterns=patterns, local_files_only=not allow_download)
        )
    except Exception as exc:  # every failure here means "not available": say so in one line
        reason = "not in the local Hugging Face cache"
        if allow_download:
            reason = f"not downloadable ({_first_line(exc)})"
        raise ModelNotFoundError(f"model {text} is {reason}: {hint.format(id=text)}") from None
    missing = _missing_parts(snapshot, subfolders)
    if missing:
        raise ModelNotFoundError(
            f"model {text} is only partly in the Hugging Face cache ({snapshot}), missing "
            f"{', '.join(missing)}: {hint.format(id=text)}"
        )
    return snapshot


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _variant(folder: Path) -> str | None:
    """``fp16`` where a subfolder holds only fp16-variant weight files (as SVD ships them)."""
    plain = [p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin")]
    if plain and all(".fp16." in p.name for p in plain):
        return "fp16"
    return None


@dataclass
class PromptEmbeddings:
    """Text conditioning for classifier-free guidance.

    uncond: ``[1, 77, D]`` embeddings of the negative prompt (model dtype, model device).
    cond: ``[1, 77, D]`` embeddings of the prompt.
    """

    uncond: torch.Tensor
    cond: torch.Tensor


class ZeroscopeBackbone:
    """zeroscope_v2_576w through diffusers, implementing :class:`VideoBackbone`.

    Args:
        unet: ``UNet3DConditionModel``; vae: ``AutoencoderKL`` or, for the SVD decoder,
        ``AutoencoderKLTemporalDecoder``; text_encoder: ``CLIPTextModel``; tokenizer:
        ``CLIPTokenizer``; scheduler: ``DDPMScheduler``.
        device, dtype: where and in which precision the networks run. Outputs are float32.
        offload: keep the networks on the CPU and move each to ``device`` only while it runs
            (for GPUs too small to hold the UNet, VAE and text encoder at once).
        unet_batch: most videos per UNet call (each is run twice for guidance); None = all.
        vae_batch: most frames per VAE encode/decode call; the temporal decoder always decodes
            whole videos of ``num_frames`` frames.
        num_frames: default video length for the temporal decoder (the sampler's F).
    """

    def __init__(
        self,
        unet: Any,
        vae: Any,
        text_encoder: Any,
        tokenizer: Any,
        scheduler: Any,
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        offload: bool = False,
        unet_batch: int | None = None,
        vae_batch: int = 16,
        num_frames: int | None = None,
        name: str = ZEROSCOPE_ID,
    ) -> None:
        from diffusers.models.attention_processor import AttnProcessor2_0

        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.unet = unet
        self.vae = vae
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.scheduler = scheduler
        self.offload = bool(offload) and self.device.type != "cpu"
        if unet_batch is not None and unet_batch < 1:
            raise ValueError(f"unet_batch must be >= 1 or None, got {unet_batch}")
        if vae_batch < 1:
            raise ValueError(f"vae_batch must be >= 1, got {vae_batch}")
        self.unet_batch = unet_batch
        self.vae_batch = int(vae_batch)
        self.num_frames = num_frames
        self.name = name
        self.latent_channels = int(unet.config.in_channels)
        self.downscale = 2 ** (len(vae.config.block_out_channels) - 1)
        self.scaling_factor = float(vae.config.scaling_factor)
        self.temporal_decoder = type(vae).__name__ == "AutoencoderKLTemporalDecoder"

        # Fused attention: torch SDPA (flash / memory-efficient kernels on CUDA) in every
        # spatial, temporal and cross attention of the UNet and in the VAE's mid-block.
        unet.set_attn_processor(AttnProcessor2_0())
        vae.set_attn_processor(AttnProcessor2_0())
        for module in (unet, vae, text_encoder):
            module.requires_grad_(False)
            module.eval()
            if next(module.parameters()).dtype != self.dtype:
                module.to(dtype=self.dtype)
        home = torch.device("cpu") if self.offload else self.device
        for module in (unet, vae, text_encoder):
            module.to(home)

    # ----------------------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(
        cls,
        model: str | Path = ZEROSCOPE_ID,
        *,
        decoder: Decoder = "zeroscope",
        decoder_model: str | Path = SVD_ID,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        offload: bool = False,
        unet_batch: int | None = None,
        vae_batch: int = 16,
        allow_download: bool = False,
    ) -> ZeroscopeBackbone:
        """Load zeroscope from a folder or a Hugging Face id (local files only unless
        ``allow_download``). ``decoder="svd"`` takes the VAE (temporal decoder) from
        ``decoder_model``'s ``vae/`` subfolder instead of zeroscope's, as the reference does.

        Raises:
            ModelNotFoundError: the model (or the SVD VAE) is not available locally.
        """
        from diffusers import AutoencoderKL, DDPMScheduler, UNet3DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        if decoder not in ("zeroscope", "svd"):
            raise ValueError(f"decoder must be 'zeroscope' or 'svd', got {decoder!r}")
        run_device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, run_device)
        needed = (
            ZEROSCOPE_SUBFOLDERS
            if decoder == "zeroscope"
            else ("unet", "text_encoder", "tokenizer", "scheduler")
        )
        root = resolve_model_folder(
            model, needed, hint=_ZEROSCOPE_HINT, allow_download=allow_download
        )
        vae_root = root
        if decoder == "svd":
            vae_root = resolve_model_folder(
                decoder_model, ("vae",), hint=_SVD_HINT, allow_download=allow_download
            )
        try:
            unet = UNet3DConditionModel.from_pretrained(
                root,
                subfolder="unet",
                torch_dtype=torch_dtype,
                variant=_variant(root / "unet"),
                local_files_only=True,
            )
            if decoder == "svd":
                from diffusers import AutoencoderKLTemporalDecoder

                vae = AutoencoderKLTemporalDecoder.from_pretrained(
                    vae_root,
                    subfolder="vae",
                    torch_dtype=torch_dtype,
                    variant=_variant(vae_root / "vae"),
                    local_files_only=True,
                )
            else:
                vae = AutoencoderKL.from_pretrained(
                    root,
                    subfolder="vae",
                    torch_dtype=torch_dtype,
                    variant=_variant(root / "vae"),
                    local_files_only=True,
                )
            text_encoder = CLIPTextModel.from_pretrained(
                root,
                subfolder="text_encoder",
                dtype=torch_dtype,
                variant=_variant(root / "text_encoder"),
                local_files_only=True,
            )
            tokenizer = CLIPTokenizer.from_pretrained(
                root, subfolder="tokenizer", local_files_only=True
            )
            # zeroscope ships a DDIM configuration; METHOD.md samples with DDPM on the same
            # noise schedule (scaled_linear 0.00085..0.012, 1000 steps), as the reference does.
            scheduler = DDPMScheduler.from_pretrained(
                root, subfolder="scheduler", local_files_only=True
            )
        except Exception as exc:  # corrupt or mismatched files: one line, not a traceback
            raise ModelNotFoundError(
                f"{model}: could not load the model files ({_first_line(exc)})"
            ) from None
        return cls(
            unet,
            vae,
            text_encoder,
            tokenizer,
            scheduler,
            device=run_device,
            dtype=torch_dtype,
            offload=offload,
            unet_batch=unet_batch,
            vae_batch=vae_batch,
            name=str(model),
        )

    # ---------------------------------------------------------------------------- placement
    def _use(self, module: torch.nn.Module) -> torch.nn.Module:
        """With offloading, move ``module`` to the device and every other network back to the
        CPU (one network on the GPU at a time); without it, a no-op."""
        if self.offload:
            for other in (self.unet, self.vae, self.text_encoder):
                if other is not module and other.device.type != "cpu":
                    other.to("cpu")
            if module.device != self.device:
                module.to(self.device)
        return module

    # ------------------------------------------------------------------------- VideoBackbone
    @torch.no_grad()
    def encode_prompt(self, prompt: str, negative_prompt: str = "") -> PromptEmbeddings:
        """CLIP embeddings of the prompt and the negative prompt, each ``[1, 77, D]``."""
        text_encoder = self._use(self.text_encoder)
        tokens = self.tokenizer(
            [negative_prompt, prompt],
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        hidden = text_encoder(tokens.input_ids.to(self.device))[0].to(self.dtype)
        return PromptEmbeddings(uncond=hidden[0:1], cond=hidden[1:2])

    @torch.no_grad()
    def predict_noise(
        self,
        latents: torch.Tensor,
        timestep: int | torch.Tensor,
        cond: PromptEmbeddings,
        guidance: float,
    ) -> torch.Tensor:
        """Guided noise prediction, eps = eps_u + guidance * (eps_c - eps_u).

        latents: ``[B, C, T, h, w]`` float32 (B videos of T frames). Returns ``[B, C, T, h, w]``
        float32. Unconditional and conditional passes of all B videos share one UNet call (of
        ``2 * unet_batch`` videos at most); guidance 1 runs the conditional pass only.
        """
        if latents.ndim != 5 or latents.shape[1] != self.latent_channels:
            raise ShapeError(
                f"latents must be [B, {self.latent_channels}, T, h, w], got {tuple(latents.shape)}"
            )
        unet = self._use(self.unet)
        t = torch.as_tensor(timestep, device=self.device).reshape(())
        guided = float(guidance) != 1.0
        step = latents.shape[0] if self.unet_batch is None else self.unet_batch
        out = []
        for start in range(0, latents.shape[0], step):
            chunk = latents[start : start + step].to(self.device, self.dtype)
            count = chunk.shape[0]
            if guided:
                model_in = torch.cat([chunk, chunk])
                context = torch.cat(
                    [cond.uncond.expand(count, -1, -1), cond.cond.expand(count, -1, -1)]
                )
            else:
                model_in = chunk
                context = cond.cond.expand(count, -1, -1)
            model_in = self.scheduler.scale_model_input(model_in, t)
            eps = unet(model_in, t, encoder_hidden_states=context.to(self.device)).sample
            eps = eps.float()
            if guided:
                eps_uncond, eps_cond = eps.chunk(2)
                eps = eps_uncond + float(guidance) * (eps_cond - eps_uncond)
            out.append(eps)
        return torch.cat(out).to(latents.device)

    @torch.no_grad()
    def encode(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``[N, 3, H, W]`` float32 in [-1, 1] -> ``[N, C, H/8, W/8]`` float32 scaled latents,
        a sample of the posterior times the scaling factor (0.18215), ``vae_batch`` frames per
        call. H and W must be multiples of 8."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ShapeError(f"images must be [N, 3, H, W], got {tuple(images.shape)}")
        if images.shape[2] % self.downscale or images.shape[3] % self.downscale:
            raise ShapeError(
                f"image size {tuple(images.shape[2:])} is not a multiple of {self.downscale}"
            )
        vae = self._use(self.vae)
        out = []
        for start in range(0, images.shape[0], self.vae_batch):
            chunk = images[start : start + self.vae_batch].to(self.device, self.dtype)
            posterior = vae.encode(chunk).latent_dist
            out.append(posterior.sample(generator=generator).float() * self.scaling_factor)
        return torch.cat(out).to(images.device)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        """``[N, C, h, w]`` scaled latents -> ``[N, 3, 8h, 8w]`` float32 in [-1, 1] (clamped).

        With the temporal (SVD) decoder the N frames are consecutive videos of ``num_frames``
        frames each (default: ``self.num_frames``, else all N are one video), decoded one video
        per call so that its temporal layers never mix frames of different videos.
        """
        if latents.ndim != 4 or latents.shape[1] != self.latent_channels:
            raise ShapeError(
                f"latents must be [N, {self.latent_channels}, h, w], got {tuple(latents.shape)}"
            )
        vae = self._use(self.vae)
        total = latents.shape[0]
        if self.temporal_decoder:
            video = num_frames or self.num_frames or total
            if total % video:
                raise ShapeError(f"{total} latent frames are not whole videos of {video} frames")
            step = video
        else:
            step = self.vae_batch
        out = []
        for start in range(0, total, step):
            chunk = latents[start : start + step].to(self.device, self.dtype) / self.scaling_factor
            if self.temporal_decoder:
                images = vae.decode(chunk, num_frames=chunk.shape[0]).sample
            else:
                images = vae.decode(chunk).sample
            out.append(images.float().clamp(-1.0, 1.0))
        return torch.cat(out).to(latents.device)
