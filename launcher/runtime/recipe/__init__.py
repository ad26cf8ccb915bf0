"""The recipe: what the runtime expects of the user's training code, and how it holds it to that.

    protocol.py  `Recipe`, the protocol a spec's `train.recipe` class implements (read this first)
    checks.py    the protocol enforced (`ProtocolError`); failures before the first update told
                 as permanent, at the user's own file and line
"""
