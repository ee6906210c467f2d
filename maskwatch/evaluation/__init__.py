"""Accuracy against the synthetic scenes' ground truth, behind ``maskwatch eval``: ``masks`` (COCO mask
mAP), ``tracking`` (HOTA / IDF1 against a ByteTrack baseline), ``alerts`` (recall, precision and start
latency against scripted events). Not part of the runtime."""
