"""A real RTSP server for the live-camera tests: GStreamer's RTSP server (gst-rtsp-server).

Run by the SYSTEM python3 (Debian's python3-gi + gir1.2-gst-rtsp-server-1.0), not the venv:

    /usr/bin/python3 tests/pipeline/rtsp_server.py --port 8554 --mount /cam            # live test pattern
    /usr/bin/python3 tests/pipeline/rtsp_server.py --port 8554 --file clip.mp4         # an H.264 mp4, real time

Prints ``READY <port>`` on stdout once it listens. Ends on SIGTERM / SIGINT, and when its stdin
closes (the test process died), so no server outlives the test that started it.
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def launch_line(args: argparse.Namespace) -> str:
    if args.file:
        # a recorded clip, played at its own rate (the server's sinks sync to the clock); one client
        # session at a time plays it from the start
        return (f"( filesrc location={args.file} ! qtdemux ! h264parse config-interval=-1 "
                f"! rtph264pay name=pay0 pt=96 config-interval=1 )")
    return (
        f"( videotestsrc is-live=true pattern={args.pattern} "
        f"! video/x-raw,width={args.width},height={args.height},framerate={args.fps}/1 "
        f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={args.fps} "
        f"! video/x-h264,profile=baseline ! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mount", default="/cam")
    p.add_argument("--file", help="serve this H.264 mp4 instead of a live test pattern")
    p.add_argument("--pattern", default="ball")
    p.add_argument("--fps", type=int, default=10)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--user", help="require RTSP basic authentication with this user")
    p.add_argument("--password", default="")
    args = p.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(args))
    factory.set_shared(not args.file)  # live: every client sees the same stream; file: each from the start
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
        server.set_auth(auth)
        perms = GstRtspServer.RTSPPermissions()
        perms.add_role_from_structure(Gst.Structure.new_from_string(
            "user, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"))
        factory.set_permissions(perms)
    server.get_mount_points().add_factory(args.mount, factory)
    loop = GLib.MainLoop()
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1

    def quit_(*_a) -> bool:
        loop.quit()
        return False

    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, quit_)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, quit_)
    # the parent holds our stdin open; EOF / hang-up means it is gone
    GLib.io_add_watch(GLib.IOChannel.unix_new(sys.stdin.fileno()), GLib.PRIORITY_DEFAULT,
                      GLib.IOCondition.IN | GLib.IOCondition.HUP | GLib.IOCondition.ERR,
                      lambda ch, cond: quit_() if (cond & (GLib.IOCondition.HUP | GLib.IOCondition.ERR)
                                                   or not sys.stdin.buffer.read1(4096)) else True)
    print(f"READY {args.port}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
