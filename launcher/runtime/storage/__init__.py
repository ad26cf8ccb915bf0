"""The volume the runtime writes to, and its storage failures said as the user's.

Public face: `volume.Volume` (`commit()`, `reload()`, nothing more: a `modal.Volume` on Modal,
a `volume.LocalVolume` locally), `volume.guarded`, and `disk.StorageError`.

    volume.py  the volume's protocol and the local volume (working copies, commit, reload)
    tree.py    folder trees: hard-link clones, snapshots, diffs, applying a diff
    disk.py    the user's disk full, read-only or split: a `StorageError` (permanent, path first)
"""
