"""MTCNN face cropping (facenet-pytorch): one image in, one crop row or one reason out.

`FaceCropper` is the callable class that Ray Data's actor pool runs over batches of manifest rows; the same
class serves `dfsweep predict`-style single-image use. It never raises on bad input: a row that cannot be
cropped comes back with a status and a reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import pyarrow as pa

from dfsweep import schema

MAX_DETECT_SIDE_PX = 1600  # larger images are downscaled for detection, so memory stays bounded

RESULT = pa.schema(list(schema.CROPS) + [pa.field("status", pa.string()), pa.field("reason", pa.string())])


@dataclass(frozen=True)
class Face:
    box: np.ndarray  # x1, y1, x2, y2 in the original image
    prob: float
    landmarks: np.ndarray  # (5, 2)
    n_faces: int


def decode_image(data: bytes) -> np.ndarray | None:
    """BGR uint8 (H, W, 3) with EXIF orientation applied, or None when OpenCV cannot decode it."""
    buf = np.frombuffer(data, dtype=np.uint8)
    if buf.size == 0:
        return None
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)  # grayscale and RGBA come back as 3-channel BGR
    return img


def load_mtcnn(min_face_px: int = 40, device: str = "cpu"):
    import torch
    from facenet_pytorch import MTCNN

    torch.set_grad_enabled(False)
    # keep_all: we want every face so the count can be recorded; the most confident is kept.
    return MTCNN(keep_all=True, min_face_size=min_face_px, device=device, post_process=False)


def detect_face(mtcnn, bgr: np.ndarray, min_face_prob: float) -> Face | None:
    """The most confident face above `min_face_prob`, in the original image's coordinates, or None."""
    h, w = bgr.shape[:2]
    scale = min(1.0, MAX_DETECT_SIDE_PX / max(h, w))
    img = bgr if scale == 1.0 else cv2.resize(bgr, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    rgb = np.ascontiguousarray(img[:, :, ::-1])
    boxes, probs, points = mtcnn.detect(rgb, landmarks=True)
    if boxes is None:
        return None
    keep = [i for i, p in enumerate(probs) if p is not None and p >= min_face_prob]
    if not keep:
        return None
    best = max(keep, key=lambda i: probs[i])
    return Face(box=np.asarray(boxes[best], np.float32) / scale, prob=float(probs[best]),
                landmarks=np.asarray(points[best], np.float32) / scale, n_faces=len(keep))


def square_crop(bgr: np.ndarray, box: np.ndarray, margin: float, size_px: int) -> np.ndarray:
    """A square around the box (side = longer box side x (1 + 2 margin)), padded at the image edge, resized bilinearly."""
    x1, y1, x2, y2 = box
    side = max(x2 - x1, y2 - y1) * (1 + 2 * margin)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left, top = int(round(cx - side / 2)), int(round(cy - side / 2))
    s = max(1, int(round(side)))
    h, w = bgr.shape[:2]
    pad = max(0, -left, -top, left + s - w, top + s - h)
    if pad:
        bgr = cv2.copyMakeBorder(bgr, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    crop = bgr[top + pad: top + pad + s, left + pad: left + pad + s]
    return cv2.resize(crop, (size_px, size_px), interpolation=cv2.INTER_LINEAR)


def encode_png(bgr: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", bgr)
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 3-channel image
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def decode_png_rgb(data: bytes) -> np.ndarray:
    """A crop's PNG bytes as RGB uint8 (H, W, 3)."""
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]


class FaceCropper:
    """Ray Data actor: manifest rows (sample_id, path, dataset, domain, label, split) -> crop rows with a status."""

    def __init__(self, crop_size_px: int, margin: float, min_face_px: int, min_face_prob: float, device: str = "cpu"):
        self.crop_size_px = crop_size_px
        self.margin = margin
        self.min_face_px = min_face_px
        self.min_face_prob = min_face_prob
        self.mtcnn = load_mtcnn(min_face_px, device)

    def crop_one(self, path: str) -> dict:
        """Crop fields (image, height, width, box, face_prob, landmarks, n_faces) plus status and reason."""
        blank = dict(image=b"", height=0, width=0, box=[0.0] * 4, face_prob=0.0, landmarks=[0.0] * 10, n_faces=0)
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            return {**blank, "status": schema.STATUS_UNREADABLE, "reason": f"cannot read file: {exc.strerror or exc}"}
        bgr = decode_image(data)
        if bgr is None:
            return {**blank, "status": schema.STATUS_UNREADABLE, "reason": "not a decodable image (OpenCV could not read it)"}
        face = detect_face(self.mtcnn, bgr, self.min_face_prob)
        if face is None:
            return {**blank, "status": schema.STATUS_NO_FACE,
                    "reason": f"MTCNN found no face with probability >= {self.min_face_prob}"}
        fw, fh_ = face.box[2] - face.box[0], face.box[3] - face.box[1]
        if min(fw, fh_) < self.min_face_px:
            return {**blank, "status": schema.STATUS_TOO_SMALL,
                    "reason": f"face box {fw:.0f}x{fh_:.0f} px is under the minimum of {self.min_face_px} px"}
        crop = square_crop(bgr, face.box, self.margin, self.crop_size_px)
        return dict(image=encode_png(crop), height=crop.shape[0], width=crop.shape[1],
                    box=[float(v) for v in face.box], face_prob=face.prob,
                    landmarks=[float(v) for v in face.landmarks.reshape(-1)], n_faces=face.n_faces,
                    status=schema.STATUS_OK, reason="")

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = []
        for row in batch.select(["sample_id", "dataset", "domain", "label", "split", "path"]).to_pylist():
            rows.append({**row, **self.crop_one(row["path"])})
        return pa.Table.from_pylist(rows, schema=RESULT)
