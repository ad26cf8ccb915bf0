"""`launch report`: training curves of one or several runs, as a PNG or a self-contained HTML page.

Public face:

    history.find_runs(volumes, ids)     each run's folder (`<volume>/<job>/runs/<run id>/`), by id
                                        or unique prefix (`RunNotFound`, in one line)
    history.read(folder)                its `metrics.jsonl` as a `History` (metric -> steps, values)
    draw.figure(histories, metrics)     the picture, drawn with matplotlib (the `report` extra,
                                        imported only here); `draw.png` / `draw.html` write it

Imports neither torch nor modal.
"""
