"""The train stage inside its container: the session, its training loop and what they share.

Public face: `session.Session`, the plain object behind the generated app's Modal class
(`stage1`, `stage2`, `train`, `shutdown`), and `session.import_recipe` / `build_recipe`.

    session.py      the container's state across calls: recipe, loop, lease, one process or many
    loop.py         one training process: the update loop, its cadence, logs and result
    context.py      `LoopContext`: what a loop and its checkpoint manager are handed
    accelerator.py  Accelerate's Accelerator, keeping its own list of what it prepared
    results.py      the result file a forked worker leaves for the container's main process

The session builds loops; a loop never imports the session.
"""
