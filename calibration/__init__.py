"""Camera intrinsics, hand-eye, system identification (real to sim), point-cloud registration."""
