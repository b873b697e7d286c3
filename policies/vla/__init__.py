"""kizuna's vision-language-action policy: model, language encoders, checkpoints, training.

``policies.base.load_policy(path)`` loads a checkpoint through ``policies.vla.policy``;
``kizuna train`` runs ``policies.vla.train``. Tests build tiny checkpoints with
``policies.vla.testing.make_tiny_checkpoint``.
"""
