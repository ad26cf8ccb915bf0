"""What Accelerate's wrapped optimizer step costs PPO, and what the runtime saves of it.

Run: python bench/optimizer_step.py [--rounds 5] [--updates 10]

`AcceleratedOptimizer.step` calls `accelerate.utils.is_lomo_available()` twice per step: an
uncached `importlib.util.find_spec("lomo_optim")`, which searches every path entry when the
package is not installed. PPO makes 16 optimizer steps per update (2 epochs x 8 minibatches).
The runtime's Accelerator records that the package is absent (`sys.modules[...] = None`), so
the lookup returns at once. This times PPO updates (`train_step`: rollout and update) in one
process, in alternating blocks with and without that record, and prints the medians.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from accelerate.utils import is_lomo_available  # noqa: E402

from launcher.recipes.ppo import PPO  # noqa: E402
from launcher.runtime.train.accelerator import Accelerator  # noqa: E402

NAME = "lomo_optim"


def per_update(recipe: PPO, updates: int) -> float:
    start = time.perf_counter()
    for step in range(updates):
        recipe.train_step(step)
    return (time.perf_counter() - start) / updates


def lookup_seconds() -> float:
    n = 2000
    return timeit.timeit(is_lomo_available, number=n) / n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--updates", type=int, default=10)
    args = parser.parse_args()
    recipe = PPO({}, seed=1)
    recipe.setup(Accelerator(cpu=True))  # records lomo_optim as absent
    per_update(recipe, 3)  # warm-up
    times: dict[str, list[float]] = {"searched": [], "recorded": []}
    lookups: dict[str, list[float]] = {"searched": [], "recorded": []}
    for _ in range(args.rounds):
        for mode in times:
            if mode == "searched":
                sys.modules.pop(NAME, None)
            else:
                sys.modules[NAME] = None  # type: ignore[assignment]
            lookups[mode].append(lookup_seconds())
            times[mode].append(per_update(recipe, args.updates))
    med = {mode: statistics.median(v) for mode, v in times.items()}
    look = {mode: statistics.median(v) for mode, v in lookups.items()}
    calls = 2 * recipe.cfg.update_epochs * recipe.cfg.num_minibatches
    print(f"PPO update (rollout of {recipe.cfg.num_envs} x {recipe.cfg.rollout_steps} steps and "
          f"{calls // 2} optimizer steps), median of {args.rounds} blocks of {args.updates} updates, "
          f"one process, CPU:")
    for mode, label in (("searched", "find_spec searches sys.path (Accelerate as is)"),
                        ("recorded", "absence recorded by launcher's Accelerator")):
        print(f"  {label:<48} {1e3 * med[mode]:7.2f} ms per update; is_lomo_available() "
              f"{1e6 * look[mode]:6.2f} us x {calls} = {1e3 * calls * look[mode]:.2f} ms")
    saved = med["searched"] - med["recorded"]
    print(f"  saved {1e3 * saved:.2f} ms per update ({100 * saved / med['searched']:.1f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
