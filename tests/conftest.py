"""Suite-wide settings: headless MuJoCo rendering and one thread per pool (2-core CI)."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
for _var in ("OMP_NUM_THREADS", "LP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
