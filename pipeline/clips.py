"""Event clips: an H.264 MP4 per alert, from ``pre_s`` before its start to ``post_s`` after its end, off the hot path.

Analytics keeps, per camera (``CameraClips``, owned by the camera's analytics thread: no lock), the *pre-roll*: the
analysed frames of the last ``pre_s`` seconds of stream time, each a copy of the frame's model-input content (the
letterboxed input without its padding, 640x360 for a 720p camera and a 640 model: 691 kB; ``scale`` shrinks it)
with references to its detections, active zones and zone file. At an alert's ``start`` the pre-roll goes to the
``clips`` thread, then every analysed frame of that camera until ``post_s`` after the alert's ``end`` (or ``max_s``
after the clip's first frame, or the end of the stream). Everything passes through one bounded ``drop_oldest`` ring:
analytics never waits; a dropped item (counted and logged) costs a clip frames (or its pre-roll), never a stage time.

The ``clips`` thread draws each frame once (``draw.annotate`` at content scale, as the console's live view) and
encodes it into every open clip of its camera (PyAV, libx264, yuv420p; timestamps from the frames' stream clock, so a
clip plays at the source's pace, gaps included) into ``<dir>/<camera>/.<name>.<pid>.tmp``, renamed to
``<dir>/<camera>/<alert id>.mp4`` when the clip is complete: a reader never sees half a file. The ``end`` event
carries the path (``extra["clip"]``); the file appears about ``post_s`` later. After each clip the oldest clips in
``dir`` are deleted until all take at most ``max_gb`` (counted and logged). The MP4's metadata says what it shows:
``title`` the alert id, ``comment`` JSON (camera, alert id, stream time of the first frame and of the alert's start),
``creation_time`` the wall clock of its first frame.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from .config import ClipsConfig
from .draw import annotate
from .ring import Ring, RingClosed
from .types import AlertEvent, Detections, Frame

log = logging.getLogger(__name__)
POLL_S = 0.1
EPS_S = 1e-6
IDLE_CLOSE_S = 5.0  # a clip whose alert has ended and that got no frame for this long (camera offline) is finished
                    # (or 3 frame periods, for a camera analysed slower than that)
TIME_BASE = Fraction(1, 1000)  # clip timestamps: milliseconds
GB = 1e9
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_DONE_KEEP = 4096  # finished alert ids remembered, so that a late frame does not open their clip again


def clip_name(alert_id: str) -> str:
    return _UNSAFE.sub("_", alert_id) + ".mp4"


@dataclass(eq=False)
class ClipFrame:
    """One analysed frame as a clip needs it: what the pre-roll holds."""

    camera: str
    pts_s: float  # stream clock
    wall_s: float
    image: np.ndarray  # RGB uint8, the model input's content (scaled by ``scale``); a copy
    frame_wh: tuple[int, int]  # the camera frame's size: detections and zones are in its pixels
    dets: Detections
    active: frozenset[str]
    zone_file: object | None


@dataclass(eq=False)
class ClipJob:
    """One alert's clip. Analytics makes it at the start and sets ``end_pts_s`` at the end; the clips thread reads."""

    alert_id: str
    camera: str
    path: Path
    start_pts_s: float  # the alert's start (stream clock)
    first_pts_s: float  # the clip's first frame
    fps: float  # nominal frame rate (a hint to the encoder: timestamps come from the frames)
    end_pts_s: float | None = None
    closed: bool = False  # analytics sends it no more frames (max_s reached, or its end + post_s passed)


class CameraClips:
    """The analytics side of one camera: its pre-roll and its alerts' clips. Only its analytics thread calls it;
    nothing here waits (the writer's ring drops its oldest item when full)."""

    def __init__(self, writer: ClipWriter, camera: str, fps: Callable[[], float | None],
                 max_fps: float | None = None) -> None:
        cfg = writer.cfg
        self.writer = writer
        self.camera = camera
        self._fps = fps
        self._max_fps = max_fps
        self.pre_s, self.post_s, self.max_s, self.scale = cfg.pre_s, cfg.post_s, cfg.max_s, cfg.scale
        self.pre: deque[ClipFrame] = deque()
        self.jobs: dict[str, ClipJob] = {}  # alert id -> its clip, until the alert's end

    def rate(self) -> float:
        """The analysed frame rate: the source's, at most the camera's max_fps (15 while unknown)."""
        fps = self._fps() or 0.0
        fps = fps if 0 < fps <= 1000 else (self._max_fps or 15.0)
        return min(fps, self._max_fps) if self._max_fps else fps

    def event(self, ev: AlertEvent) -> None:
        """An alert event of this camera, before it is stored: a start opens a clip, an end names it
        (``extra["clip"]``) and starts the ``post_s`` countdown."""
        if ev.type == "start" and ev.id not in self.jobs:
            since = ev.started_pts_s - self.pre_s - EPS_S
            pre = [f for f in self.pre if f.pts_s >= since]
            job = ClipJob(ev.id, self.camera, self.writer.path_for(ev), ev.started_pts_s,
                          pre[0].pts_s if pre else ev.pts_s, self.rate())
            self.jobs[ev.id] = job
            self.writer.offer(("start", job, pre))
        elif ev.type == "end":
            job = self.jobs.get(ev.id)
            if job is None:
                return
            job.end_pts_s = ev.pts_s
            ev.extra["clip"] = str(job.path)  # written about post_s later
            if job.closed:  # max_s ended it already
                del self.jobs[ev.id]

    def frame(self, frame: Frame, dets: Detections, active: set[str], zone_file) -> None:
        """Each analysed frame, after its events: into the pre-roll and every open clip of the camera."""
        open_jobs = [j for j in self.jobs.values() if not j.closed]
        if self.pre_s <= 0 and not open_jobs:
            return
        image = frame.content
        if self.scale < 1:
            h, w = image.shape[:2]
            size = (max(2, round(w * self.scale)), max(2, round(h * self.scale)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        else:
            image = image.copy()  # not a view: the padded input it belongs to is freed
        cf = ClipFrame(self.camera, frame.pts_s, frame.wall_s, image, frame.frame_wh, dets, frozenset(active),
                       zone_file)
        if self.pre_s > 0:
            pre = self.pre
            pre.append(cf)
            while pre[0].pts_s < cf.pts_s - self.pre_s - EPS_S:
                pre.popleft()
            cap = math.ceil(self.pre_s * min(240.0, self.rate()) * 1.5) + 2  # a stream clock that stands still
            while len(pre) > cap:
                pre.popleft()
        wanted = []
        for job in open_jobs:
            if (job.end_pts_s is not None and cf.pts_s > job.end_pts_s + self.post_s + EPS_S) \
                    or cf.pts_s - job.first_pts_s > self.max_s + EPS_S:
                self._close(job)
            else:
                wanted.append(job)
        if wanted:
            self.writer.offer(("frame", cf, tuple(wanted)))

    def _close(self, job: ClipJob) -> None:
        job.closed = True
        if job.end_pts_s is not None:
            del self.jobs[job.alert_id]
        self.writer.offer(("close", job))

    def finish(self) -> None:
        """End of the camera's stream: its open clips end with what they have."""
        for job in list(self.jobs.values()):
            if not job.closed:
                self._close(job)
        self.jobs.clear()
        self.pre.clear()


class _Clip:
    """An MP4 being written (on the clips thread)."""

    def __init__(self, job: ClipJob) -> None:
        self.job = job
        self.tmp = job.path.with_name(f".{job.path.name}.{os.getpid()}.tmp")
        self.container = None
        self.stream = None
        self.first_pts_s: float | None = None
        self.last_pts = -1
        self.frames = 0
        self.last_frame_at = time.monotonic()

    def write(self, cf: ClipFrame, rgb: np.ndarray, crf: int) -> None:
        if self.container is None:
            self._open(cf, rgb, crf)
        h, w = self.stream.height, self.stream.width
        if rgb.shape[0] != h or rgb.shape[1] != w:
            rgb = np.ascontiguousarray(rgb[:h, :w])
        vf = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        pts = max(round((cf.pts_s - self.first_pts_s) / TIME_BASE), self.last_pts + 1)
        vf.pts, vf.time_base = pts, TIME_BASE
        for packet in self.stream.encode(vf):
            self.container.mux(packet)
        self.last_pts = pts
        self.frames += 1
        self.last_frame_at = time.monotonic()

    def _open(self, cf: ClipFrame, rgb: np.ndarray, crf: int) -> None:
        job = self.job
        self.first_pts_s = cf.pts_s
        self.tmp.parent.mkdir(parents=True, exist_ok=True)
        c = av.open(str(self.tmp), mode="w", format="mp4", options={"movflags": "+faststart"})
        try:
            c.metadata["title"] = job.alert_id
            c.metadata["comment"] = json.dumps({"camera": job.camera, "alert_id": job.alert_id,
                                                "first_pts_s": round(cf.pts_s, 6),
                                                "alert_start_pts_s": round(job.start_pts_s, 6),
                                                "first_wall_time": round(cf.wall_s, 3)})
            c.metadata["creation_time"] = datetime.fromtimestamp(cf.wall_s, timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%S.%fZ")
            s = c.add_stream("libx264", rate=Fraction(round(job.fps * 1000), 1000))
            s.width, s.height = rgb.shape[1] - rgb.shape[1] % 2, rgb.shape[0] - rgb.shape[0] % 2
            s.pix_fmt = "yuv420p"
            s.codec_context.time_base = TIME_BASE
            s.time_base = TIME_BASE
            s.options = {"preset": "veryfast", "crf": str(crf)}
        except BaseException:
            c.close()
            raise
        self.container, self.stream = c, s

    def finish(self) -> None:
        """Flush, close, and put the file in its place."""
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()
        self.container = None
        os.replace(self.tmp, self.job.path)

    def discard(self) -> None:
        if self.container is not None:
            try:
                self.container.close()
            except (OSError, ValueError, av.error.FFmpegError):
                pass
            self.container = None
        self.tmp.unlink(missing_ok=True)


_ERRORS = (OSError, ValueError, av.error.FFmpegError, cv2.error)


class ClipWriter:
    """The ``clips`` thread's side: draws, encodes and files the clips, and keeps ``dir`` under ``max_gb``."""

    def __init__(self, cfg: ClipsConfig, names: dict[int, str]) -> None:
        self.cfg = cfg
        self.dir = Path(cfg.dir)
        self.names = names
        self.ring: Ring[tuple] = Ring(cfg.ring_slots, "drop_oldest", "clips")
        self.written = 0
        self.failed = 0
        self.deleted = 0
        self.frames = 0  # frames encoded (a frame in two overlapping clips counts twice)
        self._dropped_logged = 0
        self._clips: dict[str, _Clip] = {}  # alert id -> its open clip (clips thread only)
        self._done: OrderedDict[str, None] = OrderedDict()
        self._polys: dict[str, tuple] = {}  # camera -> (zone file, frame size, polygons in frame pixels)

    def path_for(self, event: AlertEvent) -> Path:
        return self.dir / event.camera / clip_name(event.id)

    def camera(self, camera: str, fps: Callable[[], float | None], max_fps: float | None = None) -> CameraClips:
        """The analytics side of one camera (``fps``: its source's frame rate once known; ``max_fps``: its cap)."""
        return CameraClips(self, camera, fps, max_fps)

    def offer(self, item: tuple) -> None:
        """Called by analytics: never blocks (the oldest waiting item is dropped when full)."""
        try:
            self.ring.put(item)
        except RingClosed:
            return
        dropped = self.ring.dropped
        if dropped >= max(1, 2 * self._dropped_logged):  # logged at 1, 2, 4, 8, ... drops: no flood
            log.warning("clips: ring full (encoding is behind), %d item(s) dropped so far (the oldest go first; "
                        "clips lose frames)", dropped)
            self._dropped_logged = dropped

    # -- the clips thread -----------------------------------------------------------------------------------
    def run(self, abort: threading.Event, done: Callable[[], bool]) -> None:
        """Thread body: until ``abort``, or ``done()`` and nothing left; the clips still open are finished."""
        try:
            while not abort.is_set():
                try:
                    item = self.ring.get(timeout=POLL_S)
                except RingClosed:
                    return
                if item is None:
                    if done() and not len(self.ring):  # done first: every put happened before it was set
                        return
                    self._close_idle()
                    continue
                self._handle(item)
        finally:
            for clip in list(self._clips.values()):
                self._finish(clip)

    def _handle(self, item: tuple) -> None:
        kind = item[0]
        if kind == "start":
            _, job, frames = item
            clip = self._clip(job)
            for cf in frames:
                if clip is None or job.alert_id not in self._clips:
                    break
                self._write(clip, cf, self._draw(cf))
        elif kind == "frame":
            _, cf, jobs = item
            rgb = None
            for job in jobs:
                clip = self._clip(job)
                if clip is not None:
                    if rgb is None:
                        rgb = self._draw(cf)
                    self._write(clip, cf, rgb)
            wanted = {j.alert_id for j in jobs}
            for clip in [c for c in self._clips.values() if c.job.camera == cf.camera and c.job.alert_id not in wanted]:
                self._finish(clip)  # its close was dropped: analytics no longer sends it frames
        elif kind == "close":
            job = item[1]
            clip = self._clips.get(job.alert_id)
            if clip is not None:
                self._finish(clip)
            elif job.alert_id not in self._done:
                self._lost(job, "all its frames were dropped")

    def _clip(self, job: ClipJob) -> _Clip | None:
        """The open clip of ``job``; opened on its first frame (also when its start item was dropped)."""
        clip = self._clips.get(job.alert_id)
        if clip is None and job.alert_id not in self._done:
            clip = self._clips[job.alert_id] = _Clip(job)
        return clip

    def _draw(self, cf: ClipFrame) -> np.ndarray:
        polys: dict[str, np.ndarray] = {}
        if cf.zone_file is not None:
            cached = self._polys.get(cf.camera)
            if cached is not None and cached[0] is cf.zone_file and cached[1] == cf.frame_wh:
                polys = cached[2]
            else:
                polys = {z.id: np.array(cf.zone_file.polygon_px(z.id, cf.frame_wh)) for z in cf.zone_file.zones}
                self._polys[cf.camera] = (cf.zone_file, cf.frame_wh, polys)
        return annotate(cf.image, cf.dets, self.names, polys, set(cf.active), frame_wh=cf.frame_wh)

    def _write(self, clip: _Clip, cf: ClipFrame, rgb: np.ndarray) -> None:
        try:
            clip.write(cf, rgb, self.cfg.crf)
            self.frames += 1
        except _ERRORS as exc:
            self._fail(clip, exc)

    def _finish(self, clip: _Clip) -> None:
        job = clip.job
        self._clips.pop(job.alert_id, None)
        self._mark_done(job.alert_id)
        if clip.container is None:
            clip.discard()
            self._lost(job, "all its frames were dropped")
            return
        try:
            clip.finish()
        except _ERRORS as exc:
            self._fail(clip, exc)
            return
        self.written += 1
        log.debug("clips: wrote %s (%d frames)", job.path, clip.frames)
        self._keep_under_cap(job.path)

    def _fail(self, clip: _Clip, exc: BaseException) -> None:
        self._clips.pop(clip.job.alert_id, None)
        self._mark_done(clip.job.alert_id)
        clip.discard()
        self.failed += 1
        log.error("clips: cannot write %s for alert %s: %s", clip.job.path, clip.job.alert_id, exc)

    def _lost(self, job: ClipJob, why: str) -> None:
        self._mark_done(job.alert_id)
        self.failed += 1
        log.warning("clips: no clip for alert %s: %s", job.alert_id, why)

    def _mark_done(self, alert_id: str) -> None:
        self._done[alert_id] = None
        while len(self._done) > _DONE_KEEP:
            self._done.popitem(last=False)

    def _close_idle(self) -> None:
        """Caught up, yet an ended alert's clip got no frame for a while: its camera stopped; finish it now."""
        now = time.monotonic()
        for clip in list(self._clips.values()):
            if clip.job.end_pts_s is not None and now - clip.last_frame_at > max(IDLE_CLOSE_S, 3.0 / clip.job.fps):
                self._finish(clip)

    def _keep_under_cap(self, keep: Path) -> None:
        """Delete the oldest clips in ``dir`` (``<dir>/<camera>/*.mp4``) until all take at most ``max_gb``; never
        ``keep``, the clip just written."""
        limit = self.cfg.max_gb * GB
        files: list[tuple[float, str, int]] = []
        try:
            with os.scandir(self.dir) as cams:
                for cam in cams:
                    if not cam.is_dir(follow_symlinks=False):
                        continue
                    with os.scandir(cam.path) as entries:
                        for e in entries:
                            if e.name.endswith(".mp4") and not e.name.startswith(".") \
                                    and e.is_file(follow_symlinks=False):
                                st = e.stat(follow_symlinks=False)
                                files.append((st.st_mtime, e.path, st.st_size))
        except OSError as exc:
            log.warning("clips: cannot list %s to keep it under max_gb: %s", self.dir, exc)
            return
        total = sum(f[2] for f in files)
        if total <= limit:
            return
        files.sort()
        n, freed = 0, 0
        for _, path, size in files:
            if total <= limit:
                break
            if Path(path) == keep:
                continue
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("clips: cannot delete %s: %s", path, exc)
                continue
            else:
                n += 1
                freed += size
            total -= size
        self.deleted += n
        if n:
            log.info("clips: deleted the %d oldest clip(s) (%.3f GB) to keep %s under max_gb %g GB (%d deleted "
                     "so far)", n, freed / GB, self.dir, self.cfg.max_gb, self.deleted)
        if total > limit:
            log.warning("clips: %s is over max_gb %g GB on its own", keep, self.cfg.max_gb)

    def close(self) -> None:
        self.ring.close()

    def stats(self) -> dict:
        return {"written": self.written, "dropped": self.ring.dropped, "deleted": self.deleted,
                "failed": self.failed, "frames": self.frames}
