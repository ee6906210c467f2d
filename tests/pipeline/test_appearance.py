"""Mean mask colours for the tracker's appearance cue."""

import cv2
import numpy as np

from maskwatch.pipeline.tracking.appearance import mask_colours, srgb_to_lab


def test_lab_of_srgb_matches_opencv():
    rgb = np.random.default_rng(0).random((200, 3))
    ours = srgb_to_lab(rgb)
    theirs = cv2.cvtColor(rgb[:, None, :].astype(np.float32), cv2.COLOR_RGB2Lab)[:, 0, :]
    assert np.abs(ours - theirs).max() < 0.5  # Lab units: a just-noticeable difference is about 2


def test_mask_colours_read_each_mask_pixel_at_its_centre_in_any_image_size():
    # an image 4x the mask raster: left half red, right half blue, with a one-pixel grid of white lines
    # on the borders of each 4x4 block that a centre read never sees
    img = np.zeros((40, 64, 3), np.uint8)
    img[:, :32] = (255, 0, 0)
    img[:, 32:] = (0, 0, 255)
    img[::4] = 255
    img[:, ::4] = 255
    masks = np.zeros((4, 10, 16), bool)
    masks[0, 2:5, 1:6] = True  # red
    masks[1, 2:5, 10:14] = True  # blue
    masks[2, 5:7, 6:10] = True  # half and half
    lab = mask_colours(img, masks)
    red, blue = srgb_to_lab(np.array([[1.0, 0, 0], [0, 0, 1.0]]))
    assert np.allclose(lab[0], red, atol=0.01) and np.allclose(lab[1], blue, atol=0.01)
    assert np.allclose(lab[2], srgb_to_lab(np.array([[0.5, 0, 0.5]]))[0], atol=0.01)  # the mean sRGB, in Lab
    assert np.isnan(lab[3]).all()  # an empty mask has no colour
    assert mask_colours(img, masks[:0]).shape == (0, 3)


def test_frame_content_is_the_model_input_without_its_padding():
    from maskwatch.engines import Letterbox, letterbox
    from maskwatch.pipeline.types import Frame

    yy, xx = np.mgrid[:720, :1280]
    image = np.stack([xx * 255 // 1279, yy * 255 // 719, np.full_like(xx, 128)], axis=2).astype(np.uint8)
    padded, box = letterbox(image, (640, 640))
    frame = Frame("cam", 0, 0.0, 0.0, None, padded, box)
    assert isinstance(box, Letterbox) and box.pad_xy[1] > 0  # padded above and below
    content = frame.content
    assert content.shape == (box.new_wh[1], box.new_wh[0], 3) == (360, 640, 3)
    assert np.shares_memory(content, padded)  # a view
    # the content is the frame scaled: its colours read at the same place match the frame's
    small = cv2.resize(image, (640, 360), interpolation=cv2.INTER_AREA)
    assert np.abs(content.astype(int) - small.astype(int)).max() <= 2
    assert (padded[: box.pad_xy[1]] == padded[0, 0]).all()  # the padding is one flat colour, not content


def test_frame_colours_fill_each_detection_with_its_own_colour_in_any_order():
    # asked for all detections out of order (as matches come: first pass, then second), each gets its own
    from maskwatch.pipeline.tracking.tracker import _FrameColours

    img = np.zeros((8, 24, 3), np.uint8)
    img[:, :8], img[:, 8:16], img[:, 16:] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    masks = np.zeros((3, 8, 24), bool)
    for k in range(3):
        masks[k, :, 8 * k:8 * k + 8] = True
    got = _FrameColours(img, masks).get(np.array([0, 2, 1]))
    assert np.allclose(got, mask_colours(img, masks)[[0, 2, 1]])
