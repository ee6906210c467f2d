"""Alerts against scripted ground truth: intervals, one-to-one matching, recall, precision, start latency.

Pure logic on alert events as dicts (``AlertEvent.to_dict()``, or lines of an alerts JSONL file) and on the
``events.json`` that ``maskwatch synth --scenario ...`` writes (activation intervals computed from the true
masks with the same zone engine). ``maskwatch eval alerts`` and ``maskwatch replay --gt`` both score here, so
the two print the same figures for the same alerts.

A predicted alert matches a ground-truth interval of the same rule when their frame intervals overlap; each
is matched at most once (largest overlap first).
"""

from __future__ import annotations


def predicted_intervals(events: list[dict]) -> list[dict]:
    """Alert events -> one interval per alert id: rule, start / end frame, start pts, starts and ends seen."""
    by_id: dict[str, dict] = {}
    for e in events:
        iv = by_id.setdefault(e["id"], {"id": e["id"], "rule": e["rule"], "start_frame": None, "end_frame": None,
                                        "start_pts_s": None, "starts": 0, "ends": 0})
        if e["type"] == "start":
            iv["starts"] += 1
            iv["start_frame"], iv["start_pts_s"] = e["frame_index"], e["pts_s"]
        elif e["type"] == "end":
            iv["ends"] += 1
            iv["end_frame"] = e["frame_index"]
    return list(by_id.values())


def match(gt: list[dict], pred: list[dict], fps: float) -> dict:
    """Greedy one-to-one matching on frame-interval overlap, per rule."""
    pairs = []
    for gi, g in enumerate(gt):
        for pi, p in enumerate(pred):
            if p["rule"] != g["rule"] or p["start_frame"] is None:
                continue
            p_end = p["end_frame"] if p["end_frame"] is not None else p["start_frame"]
            overlap = min(g["end_frame"], p_end) - max(g["start_frame"], p["start_frame"]) + 1
            if overlap > 0:
                pairs.append((overlap, gi, pi))
    used_g, used_p, matches = set(), set(), []
    for overlap, gi, pi in sorted(pairs, reverse=True):
        if gi in used_g or pi in used_p:
            continue
        used_g.add(gi)
        used_p.add(pi)
        matches.append((gi, pi))
    latency = [(pred[pi]["start_frame"] - gt[gi]["start_frame"]) / fps for gi, pi in matches]
    return {
        "gt": len(gt), "predicted": len(pred), "matched": len(matches),
        "recall": len(matches) / len(gt) if gt else 1.0,
        "precision": len(matches) / len(pred) if pred else 1.0,
        "start_latency_s": sorted(round(x, 3) for x in latency),
        "unmatched_gt": [gt[gi]["id"] for gi in range(len(gt)) if gi not in used_g],
        "unmatched_predicted": [pred[pi]["id"] for pi in range(len(pred)) if pi not in used_p],
    }


def ground_truth_rules(gt_doc: dict) -> set[str]:
    """The rules an ``events.json`` scripts (those with an interval or an event)."""
    return {iv["rule"] for iv in gt_doc["intervals"]} | {e["rule"] for e in gt_doc.get("events", [])}


def compare(gt_doc: dict, events: list[dict], rules: set[str] | None = None) -> dict:
    """Score alert events against an ``events.json``: ``match`` over the ground truth's rules (``rules``: only
    these of them), plus ``rules``, ``other_rules_alerts`` (alerts of rules without ground truth) and
    ``one_start_one_end`` (every matched-rule alert has exactly one start and one end)."""
    gt_rules = ground_truth_rules(gt_doc)
    if rules is not None:
        gt_rules &= set(rules)
    pred = [p for p in predicted_intervals(events) if p["rule"] in gt_rules]
    res = match([iv for iv in gt_doc["intervals"] if iv["rule"] in gt_rules], pred, float(gt_doc["fps"]))
    res["rules"] = sorted(gt_rules)
    res["other_rules_alerts"] = len({e["id"] for e in events if e["rule"] not in gt_rules})
    res["one_start_one_end"] = all(p["starts"] == 1 and p["ends"] == 1 for p in pred)
    return res


def score_line(res: dict) -> str:
    """The one line ``maskwatch eval alerts`` prints for a ``compare`` result."""
    return (f"recall {res['recall']:.3f}  precision {res['precision']:.3f}  "
            f"({res['matched']} of {res['gt']} ground truth, {res['predicted']} predicted)  "
            f"start latency s {res['start_latency_s']}")
