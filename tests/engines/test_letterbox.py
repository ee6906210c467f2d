"""Letterbox: Ultralytics' rounding and padding, for every shape of frame and input."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from maskwatch.engines import InputBatch, Letterbox, letterbox

# frame (w, h), input (h, w) -> scale, new (w, h), pad (left, top); worked out from Ultralytics' LetterBox:
# r = min(H/h, W/w); new = max(round(side * r), 1); pad before = round(d/2 - 0.1) (Python rounding)
CASES = [
    pytest.param((1280, 720), (384, 640), 0.5, (640, 360), (0, 12), id="720p-into-384x640"),
    pytest.param((1280, 720), (320, 320), 0.25, (320, 180), (0, 70), id="720p-into-320-square"),
    pytest.param((1000, 563), (384, 640), 0.64, (640, 360), (0, 12), id="odd-1000x563"),
    pytest.param((540, 960), (384, 640), 0.4, (216, 384), (212, 0), id="portrait"),
    pytest.param((640, 384), (384, 640), 1.0, (640, 384), (0, 0), id="exact-fit"),
    pytest.param((97, 61), (384, 640), 384 / 61, (611, 384), (14, 0), id="tiny-upscaled-odd-pad"),
    pytest.param((1000, 559), (320, 320), 0.32, (320, 179), (0, 70), id="odd-vertical-pad-70-71"),
    pytest.param((8, 5), (4, 4), 0.5, (4, 2), (0, 1), id="bankers-rounding-2.5-to-2"),
    pytest.param((3000, 1), (384, 640), 640 / 3000, (640, 1), (0, 191), id="one-pixel-tall"),
    pytest.param((1, 3000), (384, 640), 384 / 3000, (1, 384), (319, 0), id="one-pixel-wide"),
    pytest.param((1920, 1080), (640, 640), 1 / 3, (640, 360), (0, 140), id="1080p-into-640-square"),
    pytest.param((2560, 1440), (384, 640), 0.25, (640, 360), (0, 12), id="downscale-4x"),
]


@pytest.mark.parametrize("frame_wh, input_hw, scale, new_wh, pad_xy", CASES)
def test_letterbox_parameters(frame_wh, input_hw, scale, new_wh, pad_xy):
    box = Letterbox.fit(frame_wh, input_hw)
    assert box.scale == pytest.approx(scale)
    assert box.new_wh == new_wh
    assert box.pad_xy == pad_xy
    assert box.input_wh == (input_hw[1], input_hw[0])
    assert box.frame_wh == frame_wh
    # the content fits and the padding after is round(d/2 + 0.1): never negative, never more than 1 px off centre
    right = box.input_wh[0] - new_wh[0] - pad_xy[0]
    bottom = box.input_wh[1] - new_wh[1] - pad_xy[1]
    assert right >= 0 and bottom >= 0
    assert abs(right - pad_xy[0]) <= 1 and abs(bottom - pad_xy[1]) <= 1


@pytest.mark.parametrize("frame_wh, input_hw, scale, new_wh, pad_xy", CASES)
def test_letterbox_image(frame_wh, input_hw, scale, new_wh, pad_xy):
    w, h = frame_wh
    rng = np.random.default_rng(w * 7 + h)
    frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    padded, box = letterbox(frame, input_hw)
    assert padded.shape == (*input_hw, 3) and padded.dtype == np.uint8
    left, top = pad_xy
    nw, nh = new_wh
    content = padded[top : top + nh, left : left + nw]
    expected = frame if (w, h) == new_wh else cv2.resize(frame, new_wh, interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(content, expected)
    outside = np.ones(input_hw, bool)
    outside[top : top + nh, left : left + nw] = False
    assert (padded[outside] == 114).all()


@pytest.mark.parametrize(
    "shape",
    [pytest.param((720, 1280), id="gray-2d"), pytest.param((720, 1280, 1), id="one-channel"),
     pytest.param((720, 1280, 4), id="four-channels"), pytest.param((720, 1280, 3), id="rgb")],
)
def test_letterbox_is_channel_agnostic(shape):
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, shape, dtype=np.uint8)
    padded, box = letterbox(frame, (384, 640))
    assert padded.shape == (384, 640, *shape[2:])
    # each channel is letterboxed on its own exactly as a single-channel image would be
    planes = frame.reshape(*shape[:2], -1)
    for c in range(planes.shape[2]):
        single, _ = letterbox(np.ascontiguousarray(planes[..., c]), (384, 640))
        np.testing.assert_array_equal(padded.reshape(384, 640, -1)[..., c], single)


def test_rgb_and_bgr_letterbox_agree_after_flip():
    rng = np.random.default_rng(2)
    bgr = rng.integers(0, 256, (563, 1000, 3), dtype=np.uint8)
    a, _ = letterbox(bgr, (384, 640))
    b, _ = letterbox(np.ascontiguousarray(bgr[..., ::-1]), (384, 640))
    np.testing.assert_array_equal(a[..., ::-1], b)


def test_letterbox_fills_a_given_buffer_in_place():
    rng = np.random.default_rng(3)
    out = np.zeros((384, 640, 3), np.uint8)
    for shape in [(720, 1280, 3), (960, 540, 3)]:  # a portrait frame after a landscape one: old content is overwritten
        frame = rng.integers(0, 256, shape, dtype=np.uint8)
        got, _ = letterbox(frame, (384, 640), out=out)
        assert got is out
        np.testing.assert_array_equal(out, letterbox(frame, (384, 640))[0])


@pytest.mark.parametrize(
    "image, input_hw, out, match",
    [
        pytest.param(np.zeros((0, 10, 3), np.uint8), (64, 64), None, "expected an image", id="empty-frame"),
        pytest.param(np.zeros((10,), np.uint8), (64, 64), None, "expected an image", id="1d"),
        pytest.param(np.zeros((10, 10, 3), np.uint8), (0, 64), None, "input size must be positive", id="zero-input"),
        pytest.param(np.zeros((10, 10, 3), np.uint8), (64, 64), np.zeros((64, 64), np.uint8), "out must be",
                     id="wrong-out-shape"),
        pytest.param(np.zeros((10, 10, 3), np.uint8), (64, 64), np.zeros((64, 64, 3), np.float32), "out must be",
                     id="wrong-out-dtype"),
    ],
)
def test_letterbox_rejects(image, input_hw, out, match):
    with pytest.raises(ValueError, match=match):
        letterbox(image, input_hw, out=out)


@pytest.mark.parametrize(
    "frame_wh, input_hw", [((1280, 720), (384, 640)), ((540, 960), (384, 640)), ((97, 61), (320, 320))]
)
def test_box_mapping_round_trip_and_clip(frame_wh, input_hw):
    box = Letterbox.fit(frame_wh, input_hw)
    w, h = frame_wh
    xyxy = np.array([[0, 0, w, h], [w * 0.25, h * 0.5, w * 0.75, h * 0.9]], np.float32)
    back = box.to_frame_xyxy(box.to_input_xyxy(xyxy))
    np.testing.assert_allclose(back, xyxy, atol=1e-3 * max(w, h))
    # a box reaching into the padding is clipped to the frame
    iw, ih = box.input_wh
    wide = box.to_frame_xyxy(np.array([[-50, -50, iw + 50, ih + 50]], np.float32))
    np.testing.assert_array_equal(wide, [[0, 0, w, h]])


def test_input_batch_reuses_its_buffer_and_scales_like_ultralytics():
    rng = np.random.default_rng(4)
    imgs = [rng.integers(0, 256, (32, 48, 3), dtype=np.uint8) for _ in range(3)]
    batch = InputBatch((32, 48), capacity=3)
    a = batch.fill(imgs)
    assert a.shape == (3, 3, 32, 48) and a.dtype == np.float32
    expected = np.stack([i.transpose(2, 0, 1).astype(np.float32) / np.float32(255) for i in imgs])
    np.testing.assert_array_equal(a, expected)  # bit-equal to uint8 -> float32 -> / 255
    b = batch.fill(imgs[:2])
    assert np.shares_memory(a, b) and b.shape[0] == 2
    c = batch.fill(imgs + imgs)  # grows when a bigger batch arrives
    assert c.shape[0] == 6 and batch.capacity == 6
    with pytest.raises(ValueError, match=r"expected a letterboxed RGB uint8 image of shape \(32, 48, 3\)"):
        batch.fill([np.zeros((32, 48, 3), np.float32)])
    with pytest.raises(ValueError, match="no images"):
        batch.fill([])
