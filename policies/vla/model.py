"""The VLA network: camera tokens + instruction token + state token -> trunk -> action chunk.

```
front ─CNN─► 6×6 tokens ┐
wrist ─CNN─► 6×6 tokens ├─► transformer trunk ─► memory ─┬─► flow expert (N Euler steps)
instruction ─proj─► 1   │                                └─► or L1 queries (one pass)
state ─proj─► 1 ────────┘
```

Everything the model sees and predicts is normalized (``policies.vla.normalize``).

Flow matching (pi0 convention): ``x_t = t * noise + (1 - t) * actions``, so t = 1 is pure
noise and t = 0 the data; the expert predicts the velocity ``u = noise - actions``. Sampling
starts from noise at t = 1 and takes ``flow_steps`` Euler steps ``x <- x - v / N`` to t = 0.
The trunk runs once per chunk; only the small expert runs N times (pi0's prefix cache).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional

from policies.vla.config import ModelConfig, VisionConfig

Images = dict[str, Tensor]
FLOW_T_MIN = 1e-3  # keep t off exactly 0, where the noise term vanishes


def feature_grid(image_size: tuple[int, int], blocks: int) -> tuple[int, int]:
    """Feature-map size after ``blocks`` stride-2 convs with 'same' padding (ceil halving)."""
    height, width = image_size
    for _ in range(blocks):
        height, width = (height + 1) // 2, (width + 1) // 2
    return height, width


class ImageEncoder(nn.Module):
    """Stride-2 conv + GroupNorm + GELU blocks: ``[B, 3, H, W]`` -> ``[B, C, H/16, W/16]``.

    GroupNorm, not BatchNorm: behaves the same at batch 1 (inference) as at batch 64.
    """

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for i, out_channels in enumerate(cfg.channels):
            kernel = 5 if i == 0 else 3  # a wider first kernel: more context per pixel early
            layers += [
                nn.Conv2d(in_channels, out_channels, kernel, stride=2, padding=kernel // 2),
                nn.GroupNorm(min(cfg.groups, out_channels), out_channels),
                nn.GELU(),
            ]
            in_channels = out_channels
        self.layers = nn.Sequential(*layers)
        self.out_channels = in_channels

    def forward(self, images: Tensor) -> Tensor:
        return self.layers(images)

    def features(self, images: Tensor, keep_block: int) -> tuple[Tensor, Tensor]:
        """The final map and the one after block ``keep_block`` (for keypoints)."""
        kept = images
        x = images
        for i in range(0, len(self.layers), 3):
            x = self.layers[i + 2](self.layers[i + 1](self.layers[i](x)))
            if i // 3 == keep_block:
                kept = x
        return x, kept


class SpatialSoftmax(nn.Module):
    """``[B, C, H, W]`` -> ``[B, 2K]``: per keypoint, the softmax-weighted mean (x, y) in
    [-1, 1] over a 1x1-conv heat map, with a learned temperature."""

    def __init__(self, in_channels: int, keypoints: int) -> None:
        super().__init__()
        self.heat = nn.Conv2d(in_channels, keypoints, 1)
        self.log_temperature = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor) -> Tensor:
        heat = self.heat(x)
        batch, k, height, width = heat.shape
        weights = torch.softmax(heat.flatten(2) / self.log_temperature.exp(), dim=-1)
        ys = torch.linspace(-1.0, 1.0, height, device=x.device)
        xs = torch.linspace(-1.0, 1.0, width, device=x.device)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        coords = torch.stack([grid_x.flatten(), grid_y.flatten()], dim=-1)  # [HW, 2]
        return (weights @ coords).reshape(batch, 2 * k)


def sinusoidal_embedding(t: Tensor, dim: int, max_period: float = 100.0) -> Tensor:
    """``[B]`` times in [0, 1] -> ``[B, dim]`` sin/cos features over log-spaced frequencies."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    angles = t[:, None].float() * freqs[None] * 2 * math.pi
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def _encoder_stack(cfg: ModelConfig, layers: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        cfg.d_model,
        cfg.n_heads,
        cfg.d_model * cfg.ff_mult,
        cfg.dropout,
        activation="gelu",
        batch_first=True,
        norm_first=True,
    )
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


def _decoder_stack(cfg: ModelConfig, layers: int) -> nn.TransformerDecoder:
    layer = nn.TransformerDecoderLayer(
        cfg.d_model,
        cfg.n_heads,
        cfg.d_model * cfg.ff_mult,
        cfg.dropout,
        activation="gelu",
        batch_first=True,
        norm_first=True,
    )
    return nn.TransformerDecoder(layer, layers)


class VLAModel(nn.Module):
    """Vision-language-action model with a flow-matching or L1 action head."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        names = ("shared",) if cfg.vision.share_across_cameras else cfg.cameras
        self.vision = nn.ModuleDict({name: ImageEncoder(cfg.vision) for name in names})
        channels = self.vision[names[0]].out_channels
        grid_h, grid_w = feature_grid(cfg.image_size, len(cfg.vision.channels))
        self.image_proj = nn.Linear(channels, d)
        kp = cfg.vision.keypoints
        if kp:
            block = cfg.vision.keypoint_block
            if not 0 <= block < len(cfg.vision.channels):
                raise ValueError(
                    f"model.vision.keypoint_block {block} is not a block index "
                    f"(0..{len(cfg.vision.channels) - 1})"
                )
            self.keypoints = nn.ModuleDict(
                {n: SpatialSoftmax(cfg.vision.channels[block], kp) for n in names}
            )
            self.keypoint_proj = nn.Linear(2 * kp, d)
        self.image_pos = nn.Parameter(torch.randn(grid_h * grid_w, d) * 0.02)
        self.camera_emb = nn.Parameter(torch.randn(len(cfg.cameras), d) * 0.02)
        self.language_proj = nn.Linear(cfg.language_dim, d)
        self.state_proj = nn.Linear(cfg.state_dim, d)
        self.token_type = nn.Parameter(torch.randn(2, d) * 0.02)  # [language, state]
        self.trunk = _encoder_stack(cfg, cfg.trunk_layers)
        self.trunk_norm = nn.LayerNorm(d)
        self.step_pos = nn.Parameter(torch.randn(cfg.chunk_size, d) * 0.02)
        if cfg.head == "flow":
            self.action_in = nn.Linear(cfg.action_dim, d)
            # SmolVLA-style fusion: [action, time] -> MLP -> one token per chunk step.
            self.action_time_mlp = nn.Sequential(nn.Linear(2 * d, d), nn.GELU(), nn.Linear(d, d))
        else:
            self.queries = nn.Parameter(torch.randn(cfg.chunk_size, d) * 0.02)
        self.expert = _decoder_stack(cfg, cfg.expert_layers)
        self.expert_norm = nn.LayerNorm(d)
        self.action_out = nn.Linear(d, cfg.action_dim)

    # ---- the prefix: images, language, state -> memory ----------------------------------

    def image_tokens(self, images: Images) -> Tensor:
        tokens = []
        vision = self.cfg.vision
        for k, camera in enumerate(self.cfg.cameras):
            name = "shared" if vision.share_across_cameras else camera
            encoder = self.vision[name]
            final, early = encoder.features(images[camera], vision.keypoint_block)
            features = final.flatten(2).transpose(1, 2)  # [B, h*w, C]
            tokens.append(self.image_proj(features) + self.image_pos + self.camera_emb[k])
            if vision.keypoints:
                points = self.keypoint_proj(self.keypoints[name](early))  # [B, d]
                tokens.append((points + self.camera_emb[k])[:, None])
        return torch.cat(tokens, dim=1)

    def encode(self, images: Images, state: Tensor, language: Tensor) -> Tensor:
        """Normalized inputs -> trunk output ``[B, tokens, d_model]`` (the expert's memory)."""
        language_token = self.language_proj(language) + self.token_type[0]
        state_token = self.state_proj(state) + self.token_type[1]
        tokens = torch.cat(
            [language_token[:, None], state_token[:, None], self.image_tokens(images)], dim=1
        )
        return self.trunk_norm(self.trunk(tokens))

    # ---- heads ---------------------------------------------------------------------------

    def _expert(self, queries: Tensor, memory: Tensor) -> Tensor:
        return self.action_out(self.expert_norm(self.expert(queries, memory)))

    def velocity(self, memory: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """Flow head: velocity ``[B, T, A]`` at noisy chunk ``x_t`` and times ``t`` ``[B]``."""
        d = self.cfg.d_model
        time = sinusoidal_embedding(t, d)[:, None].expand(-1, x_t.shape[1], -1)
        tokens = self.action_time_mlp(torch.cat([self.action_in(x_t), time], dim=-1))
        return self._expert(tokens + self.step_pos, memory)

    def regress(self, memory: Tensor) -> Tensor:
        """L1 head: the chunk ``[B, T, A]`` in one pass from learned per-step queries."""
        queries = (self.queries + self.step_pos).expand(memory.shape[0], -1, -1)
        return self._expert(queries, memory)

    # ---- training and inference -----------------------------------------------------------

    def loss(
        self,
        images: Images,
        state: Tensor,
        language: Tensor,
        actions: Tensor,
        action_mask: Tensor,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        """Loss terms; ``loss`` is the one to minimize. Padded chunk steps (mask 0) count 0."""
        memory = self.encode(images, state, language)
        weights = action_mask.float()[..., None]  # [B, T, 1]
        denominator = weights.sum().clamp(min=1.0) * actions.shape[-1]
        if self.cfg.head == "l1":
            l1 = ((self.regress(memory) - actions).abs() * weights).sum() / denominator
            return {"loss": l1, "l1": l1}
        noise = _randn(actions.shape, generator, actions.device)
        uniform = _rand(actions.shape[0], generator, actions.device)
        t = FLOW_T_MIN + (1 - FLOW_T_MIN) * uniform ** (1.0 / self.cfg.flow_time_alpha)
        x_t = t[:, None, None] * noise + (1 - t[:, None, None]) * actions
        error = self.velocity(memory, x_t, t) - (noise - actions)
        mse = (error.square() * weights).sum() / denominator
        return {"loss": mse, "flow_mse": mse}

    def sample(
        self, memory: Tensor, generator: torch.Generator | None = None, steps: int | None = None
    ) -> Tensor:
        """Normalized action chunks ``[B, T, A]`` from the trunk's memory."""
        if self.cfg.head == "l1":
            return self.regress(memory)
        steps = steps or self.cfg.flow_steps
        batch = memory.shape[0]
        shape = (batch, self.cfg.chunk_size, self.cfg.action_dim)
        x = _randn(shape, generator, memory.device)
        dt = 1.0 / steps
        for i in range(steps):  # Euler from t = 1 (noise) to t = 0 (actions)
            t = torch.full((batch,), 1.0 - i * dt, device=memory.device)
            x = x - dt * self.velocity(memory, x, t)
        return x

    def predict(
        self,
        images: Images,
        state: Tensor,
        language: Tensor,
        generator: torch.Generator | None = None,
        steps: int | None = None,
    ) -> Tensor:
        return self.sample(self.encode(images, state, language), generator, steps)


def _randn(
    shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device
) -> Tensor:
    # Draw on the generator's device (a CPU generator may drive a GPU model), then move.
    where = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=where).to(device)


def _rand(size: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    where = generator.device if generator is not None else device
    return torch.rand(size, generator=generator, device=where).to(device)


def resize_images(images: Tensor, size: tuple[int, int]) -> Tensor:
    """``[B, 3, H, W]`` float -> ``size``; area averaging when shrinking avoids aliasing."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    shrinking = images.shape[-2] >= size[0] and images.shape[-1] >= size[1]
    mode = "area" if shrinking else "bilinear"
    return functional.interpolate(
        images, size=size, mode=mode, **({} if shrinking else {"align_corners": False})
    )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
