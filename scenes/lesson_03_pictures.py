"""Lesson 03's pictures of the lock stories: who believed it held the lock when, and its writes.

Usage (notebook 03)::

    >>> plot_story(steps.show_d(url).events, title="d · a paused holder deletes B's lock")
"""
from __future__ import annotations

MARKERS = {  # what → (marker, colour, label)
    "wrote": ("o", "tab:green", "write accepted"),
    "write refused": ("X", "tab:red", "write refused"),
    "refused": ("x", "tab:gray", "lock refused"),
    "gave up": ("x", "tab:gray", "lock refused"),
    "killed": ("X", "black", "SIGKILL"),
}


def plot_story(events: list[dict], ax=None, title: str = ""):
    """One lane per process: when it believed it held the lock, when it was paused, its writes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _figure, ax = plt.subplots(figsize=(9, 0.6 + 0.55 * len({e["who"] for e in events})))
    start = min(e["t"] for e in events)
    end = max(e["t"] for e in events)
    ms = lambda t: (t - start) * 1000  # noqa: E731
    lanes = sorted({e["who"] for e in events}, reverse=True)
    labelled = set()  # each legend entry once
    for lane, who in enumerate(lanes):
        mine = [e for e in events if e["who"] == who]
        for begin, finish in _spans(mine, "asks", ("acquired", "gave up"), end):
            ax.barh(lane, ms(finish) - ms(begin), left=ms(begin), height=0.12, color="tab:gray",
                    label=None if "waits" in labelled else "waits for the lock")
            labelled.add("waits")
        for begin, finish in _spans(mine, "acquired", ("released", "killed"), end):
            ax.barh(lane, ms(finish) - ms(begin), left=ms(begin), height=0.5, color="tab:blue",
                    alpha=0.75, label=None if "holds" in labelled else "believes it holds the lock")
            labelled.add("holds")
        for begin, finish in _spans(mine, "paused", ("resumed",), end):
            ax.barh(lane, ms(finish) - ms(begin), left=ms(begin), height=0.5, fill=False,
                    hatch="///", edgecolor="tab:orange",
                    label=None if "paused" in labelled else "paused (SIGSTOP)")
            labelled.add("paused")
        for event in mine:
            if event["what"] == "acquired" and event.get("ttl"):
                x = ms(event["t"]) + event["ttl"]
                ax.plot([x, x], [lane - 0.4, lane + 0.4], color="tab:purple", linewidth=3,
                        label=None if "lease" in labelled else "its lease ends (TTL)")
                labelled.add("lease")
            if event["what"] in MARKERS:
                marker, colour, label = MARKERS[event["what"]]
                ax.scatter(ms(event["t"]), lane, marker=marker, color=colour, s=90, zorder=3,
                           label=None if label in labelled else label)
                labelled.add(label)
    ax.set_yticks(range(len(lanes)), [f"process {who}" for who in lanes])
    ax.set_xlabel("ms since the first event")
    ax.set_title(title, loc="left")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    ax.figure.tight_layout()
    return ax


def _spans(events: list[dict], opened: str, closed, end: float) -> list[tuple]:
    spans, begin = [], None
    for event in sorted(events, key=lambda e: e["t"]):
        if event["what"] == opened:
            begin = event["t"]
        elif event["what"] in closed and begin is not None:
            spans.append((begin, event["t"]))
            begin = None
    if begin is not None:
        spans.append((begin, end))
    return spans
