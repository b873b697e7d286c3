"""The Policy interface, the VLA model, imitation and RL training, evaluation, export."""
