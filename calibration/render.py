"""Render calibration data in MuJoCo, where the truth is known (tests, benchmarks, demos).

A tiny scene of its own: a textured board and a camera, both on mocap bodies, so any
``T_world_board`` / ``T_world_cam`` renders without recompiling. The camera is a pinhole with
square pixels; ``intrinsics()`` gives the matching OpenCV camera matrix.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import cv2  # noqa: E402
import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from calibration.board import BoardSpec  # noqa: E402
from calibration.frames import MJ_FROM_CV  # noqa: E402


def _quat(R: np.ndarray) -> np.ndarray:
    q = np.zeros(4)
    mujoco.mju_mat2Quat(q, np.ascontiguousarray(R, dtype=float).reshape(9))
    return q


class BoardRenderer:
    """Images of ``board`` seen by a ``width`` x ``height`` camera, vertical field ``fovy_deg``."""

    def __init__(
        self,
        board: BoardSpec,
        width: int = 640,
        height: int = 480,
        fovy_deg: float = 50.0,
        px_per_square: int = 80,
    ) -> None:
        self.board, self.width, self.height, self.fovy_deg = board, width, height, fovy_deg
        ok, png = cv2.imencode(".png", board.image(px_per_square))
        assert ok
        w_m, h_m = board.size_m
        # The plane's texture spans it once, its top-left texel at the plane's (-x, +y) corner
        # and it is seen from +z: flipping y and z of the board frame (x right, y down, z into
        # the board) puts the print's top-left corner at the board origin.
        xml = f"""
<mujoco>
  <asset>
    <texture name="board" type="2d" file="board.png"/>
    <material name="board" texture="board" texrepeat="1 1" texuniform="false"/>
  </asset>
  <visual>
    <quality offsamples="4"/>
    <global offwidth="{width}" offheight="{height}"/>
    <headlight ambient="0.9 0.9 0.9" diffuse="0.1 0.1 0.1" specular="0 0 0"/>
    <map znear="0.01"/>
  </visual>
  <worldbody>
    <geom type="plane" size="3 3 0.1" pos="0 0 -1" rgba="0.5 0.5 0.5 1"/>
    <body name="board" mocap="true">
      <geom type="plane" size="{w_m / 2!r} {h_m / 2!r} 0.01" pos="{w_m / 2!r} {h_m / 2!r} 0"
            quat="0 1 0 0" material="board"/>
    </body>
    <body name="cam" mocap="true">
      <camera name="cam" quat="0 1 0 0" fovy="{fovy_deg!r}"/>
    </body>
  </worldbody>
</mujoco>"""
        self.model = mujoco.MjModel.from_xml_string(xml, {"board.png": png.tobytes()})
        self.data = mujoco.MjData(self.model)
        self._renderer = mujoco.Renderer(self.model, height=height, width=width)
        self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False

    def intrinsics(self) -> np.ndarray:
        """OpenCV camera matrix (pixel centres at integers, so the centre is (w - 1) / 2)."""
        f_px = (self.height / 2.0) / np.tan(np.radians(self.fovy_deg) / 2.0)
        cx, cy = (self.width - 1) / 2.0, (self.height - 1) / 2.0
        return np.array([[f_px, 0.0, cx], [0.0, f_px, cy], [0.0, 0.0, 1.0]])

    def render(
        self,
        T_world_cam: np.ndarray,
        T_world_board: np.ndarray,
        noise_std: float = 0.0,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """RGB uint8 image; ``T_world_cam`` is an optical frame (x right, y down, z forward)."""
        self.data.mocap_pos[0] = T_world_board[:3, 3]
        self.data.mocap_quat[0] = _quat(T_world_board[:3, :3])
        self.data.mocap_pos[1] = T_world_cam[:3, 3]
        # The camera element already turns the body's optical frame into MuJoCo's (y up, -z).
        self.data.mocap_quat[1] = _quat(T_world_cam[:3, :3])
        mujoco.mj_forward(self.model, self.data)
        self._renderer.update_scene(self.data, camera="cam")
        image = self._renderer.render()
        if noise_std > 0:
            rng = rng or np.random.default_rng(0)
            image = np.clip(image + rng.normal(0.0, noise_std, image.shape), 0, 255)
        return image.astype(np.uint8)

    def close(self) -> None:
        self._renderer.close()


__all__ = ["BoardRenderer", "MJ_FROM_CV"]
