"""MTCNN face cropping (facenet-pytorch): one image in, one crop row or one reason out.

`FaceCropper` is the callable class that Ray Data's actor pool runs over batches of manifest rows; the same
class serves `dfsweep predict`-style single-image use. It never raises on bad input: a row that cannot be
cropped comes back with a status and a reason.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import cv2
import numpy as np
import pyarrow as pa

from dfsweep import schema
from dfsweep.crops import encode_png
from dfsweep.data_pipeline.paths import cv2_path, unescape_path
from dfsweep.storage import Location, parse

MAX_DETECT_SIDE_PX = 1600  # larger images are downscaled for detection, so memory stays bounded

# What a detection part file holds: the crop columns plus the outcome of every processed sample.
PART = pa.schema(list(schema.CROPS) + [pa.field("status", pa.string()), pa.field("reason", pa.string())])
# What the actors hand back to the driver: only the small columns.
OUTCOME_COLUMNS = ["sample_id", "status", "reason", "phash", "domain", "split", "label", "path"]
INPUT_COLUMNS = ["sample_id", "dataset", "domain", "label", "split", "path", "video_id", "frame_index"]


@dataclass(frozen=True)
class Face:
    box: np.ndarray  # x1, y1, x2, y2 in the original image
    prob: float
    landmarks: np.ndarray  # (5, 2)
    n_faces: int


class BadImage(ValueError):
    """An input that cannot become a face crop; `status` is its manifest status, the message its reason."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def _image_size(data: bytes) -> tuple[str, int, int] | None:
    """(format, width, height) from the header alone (Pillow reads no pixels here), or None if unknown."""
    from PIL import Image

    # Only the header is read here, so Pillow's decompression-bomb guard (meant for full decodes) is lifted for
    # the call: a huge JPEG's size must be known so that OpenCV decodes it at a reduced scale.
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.format or "", im.width, im.height
    except Exception:  # Pillow raises many types for a bad header; "unknown" is the answer to all
        return None
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def decode_image(data: bytes, *, max_side_px: int = MAX_DETECT_SIDE_PX) -> tuple[np.ndarray, int]:
    """(BGR uint8 (H, W, 3) with EXIF orientation applied, reduction factor), or BadImage with the reason.

    Grayscale, RGBA/palette, CMYK and 16-bit images all come back as 8-bit 3-channel BGR. A JPEG much larger
    than `max_side_px` is decoded at 1/2, 1/4 or 1/8 scale straight from the file, so a 12000 x 12000 photo never
    needs its full-size pixels in memory; the factor (1, 2, 4 or 8) maps decoded pixels back to the file's.
    """
    if not data:
        raise BadImage(schema.STATUS_UNREADABLE, "empty file (0 bytes)")
    if data[:2] == b"\xff\xd8" and jpeg_stream_end(data) is None:
        raise BadImage("truncated", "JPEG without its end-of-image marker: the file was cut short")
    header = _image_size(data)
    flag, factor = cv2.IMREAD_COLOR, 1
    if header and header[0] == "JPEG":
        longest = max(header[1], header[2])
        for f, reduced in ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
                           (2, cv2.IMREAD_REDUCED_COLOR_2)):
            if longest / f >= max_side_px:
                flag, factor = reduced, f
                break
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flag)
    if img is None:
        fmt = f"{header[0]} " if header else ""
        raise BadImage(schema.STATUS_UNREADABLE, f"not a decodable {fmt}image (OpenCV could not read it)")
    if img.dtype != np.uint8:  # defensive: IMREAD_COLOR already converts 16-bit to 8-bit
        img = (img / 257).astype(np.uint8)
    return img, factor


def jpeg_stream_end(data: bytes) -> int | None:
    """Where the JPEG stream that starts `data` ends (the offset just past its end-of-image marker), or None when
    the data ends first: the file was cut short. Bytes after the marker (a phone's motion-photo clip, appended
    metadata) are not part of the image; decoders ignore them.

    Walks the marker segments by their lengths, so an EXIF thumbnail's own end marker (inside APP1) is skipped,
    and the entropy-coded data after each start-of-scan up to its next marker (stuffed 0xFF00 bytes and restart
    markers belong to the scan). Stray bytes between segments are skipped as libjpeg does.
    """
    n, i = len(data), 2
    while True:
        i = data.find(b"\xff", i)
        if i < 0:
            return None
        while i < n and data[i] == 0xFF:  # fill bytes before a marker
            i += 1
        if i >= n:
            return None
        marker = data[i]
        i += 1
        if marker == 0xD9:
            return i
        if marker == 0x00 or marker == 0x01 or 0xD0 <= marker <= 0xD7:
            continue  # a stuffed byte, TEM or a restart marker: no length follows
        if i + 2 > n:
            return None
        i += int.from_bytes(data[i:i + 2], "big")
        if marker == 0xDA:  # start of scan: entropy-coded data runs to the next marker that is not part of it
            while True:
                j = data.find(b"\xff", i)
                if j < 0 or j + 1 >= n:
                    return None
                follower = data[j + 1]
                if follower == 0x00 or 0xD0 <= follower <= 0xD7:
                    i = j + 2
                    continue
                if follower == 0xFF:
                    i = j + 1
                    continue
                i = j
                break


def _open_video(path: str) -> cv2.VideoCapture:
    return cv2.VideoCapture(cv2_path(path))


def _frame_decodes(cap: cv2.VideoCapture, index: int) -> np.ndarray | None:
    """Frame `index` of an open video, read the way read_video_frame reads it (seek, then read), or None."""
    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, frame = cap.read()
    return frame if ok and frame is not None else None


def read_video_frame(path: str, index: int) -> np.ndarray:
    """One frame of a video as BGR uint8, or BadImage."""
    cap = _open_video(path)
    try:
        if not cap.isOpened():
            raise BadImage(schema.STATUS_UNREADABLE, "not a readable video (OpenCV could not open it)")
        frame = _frame_decodes(cap, index)
    finally:
        cap.release()
    if frame is None:
        raise BadImage(schema.STATUS_UNREADABLE, f"frame {index} of the video could not be decoded")
    return frame


def decodable_frame_count(path: str) -> tuple[int, int]:
    """(frames that decode, frames the container's header claims) of a video; (0, claimed) if none decodes.

    The header's count (CAP_PROP_FRAME_COUNT) over-counts a file cut short (a stopped download, a recorder that
    died): its last frames are missing. The last claimed frame is tried first (one seek for a whole file); when it
    does not decode, a binary search over seeks finds the last one that does, so frames are sampled only among
    frames that decode. Frames broken in the middle of a file are not looked for: they fail one by one, with a reason.
    """
    cap = _open_video(path)
    try:
        claimed = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
        if claimed <= 0:
            return 0, max(claimed, 0)
        if _frame_decodes(cap, claimed - 1) is not None:
            return claimed, claimed
        if _frame_decodes(cap, 0) is None:
            return 0, claimed
        good, bad = 0, claimed - 1  # frame `good` decodes, frame `bad` does not
        while bad - good > 1:
            mid = (good + bad) // 2
            if _frame_decodes(cap, mid) is not None:
                good = mid
            else:
                bad = mid
        return good + 1, claimed
    finally:
        cap.release()


DHASH_SIDE = 16  # 16 x 16 = 256 bits: at 8 x 8, crops of different aligned faces came within 1 bit of each other


def dhash(bgr: np.ndarray) -> bytes:
    """256-bit difference hash of an image (32 bytes): near-identical crops differ in a few bits.

    Measured on the demo's aligned ORL face crops: a JPEG q90 re-encode moves at most 11 bits; crops of two
    different people differ in at least 36 (median 97).
    """
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    small = cv2.resize(gray, (DHASH_SIDE + 1, DHASH_SIDE), interpolation=cv2.INTER_AREA).astype(np.int16)
    return np.packbits((small[:, 1:] > small[:, :-1]).ravel()).tobytes()


def load_mtcnn(min_face_px: int = 40, device: str = "cpu"):
    import torch
    from facenet_pytorch import MTCNN

    torch.set_grad_enabled(False)
    # keep_all: we want every face so the count can be recorded; the most confident is kept.
    return MTCNN(keep_all=True, min_face_size=min_face_px, device=device, post_process=False)


def detect_faces(mtcnn, bgr: np.ndarray, min_face_prob: float) -> list[Face]:
    """Every face at or above `min_face_prob`, in MTCNN's order, in the original image's coordinates."""
    h, w = bgr.shape[:2]
    scale = min(1.0, MAX_DETECT_SIDE_PX / max(h, w))
    img = bgr if scale == 1.0 else cv2.resize(bgr, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    rgb = np.ascontiguousarray(img[:, :, ::-1])
    boxes, probs, points = mtcnn.detect(rgb, landmarks=True)
    if boxes is None:
        return []
    keep = [i for i, p in enumerate(probs) if p is not None and p >= min_face_prob]
    return [Face(box=np.asarray(boxes[i], np.float32) / scale, prob=float(probs[i]),
                 landmarks=np.asarray(points[i], np.float32) / scale, n_faces=len(keep)) for i in keep]


def pick_face(faces: list[Face], policy: str = "most_confident") -> int:
    """Index of the face `policy` keeps (the first of equals, in the list's order)."""
    if policy == "largest":
        areas = [(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]) for f in faces]
        return max(range(len(faces)), key=lambda i: areas[i])
    return max(range(len(faces)), key=lambda i: faces[i].prob)


def detect_face(mtcnn, bgr: np.ndarray, min_face_prob: float, policy: str = "most_confident") -> Face | None:
    """The most confident (or largest) face above `min_face_prob`, in the original image's coordinates, or None."""
    faces = detect_faces(mtcnn, bgr, min_face_prob)
    return faces[pick_face(faces, policy)] if faces else None


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


class FaceCropper:
    """Ray Data actor: manifest rows (INPUT_COLUMNS, paths in the manifest's escaped form) -> outcome rows.

    With `parts_dir`, every batch's full result (crops and rejects) is first written there as one Parquet part,
    atomically and named by the batch's sample ids, so an interrupted prepare resumes from the parts it has;
    the actor then hands back only the small outcome columns.
    """

    def __init__(self, crop_size_px: int, margin: float, min_face_px: int, min_face_prob: float,
                 device: str = "cpu", face_policy: str = "most_confident", parts_dir: str | None = None):
        self.crop_size_px = crop_size_px
        self.margin = margin
        self.min_face_px = min_face_px
        self.min_face_prob = min_face_prob
        self.face_policy = face_policy
        self.parts_dir = parse(parts_dir) if parts_dir else None  # a path or a storage URI
        self.mtcnn = load_mtcnn(min_face_px, device)

    def crop_one(self, path: str, frame_index: int = -1) -> dict:
        """Crop fields (image, height, width, box, face_prob, landmarks, n_faces, phash) plus status and reason.

        `path` is the file's own name (a surrogate-escaped str where it is not UTF-8), not the manifest's escaped
        form: `__call__` turns the one into the other. `frame_index` >= 0 reads that frame of a video instead.
        """
        loaded = self._load(path, frame_index)
        if isinstance(loaded, dict):
            return loaded
        bgr, factor = loaded
        face = detect_face(self.mtcnn, bgr, self.min_face_prob, self.face_policy)
        if face is None:
            return self._no_face()
        return self._crop(bgr, factor, face)

    def crop_faces(self, path: str, frame_index: int = -1) -> list[dict]:
        """Every face of the image (or video frame): crop_one's fields for each, plus `face_index` (0, 1, ... left to
        right) and `primary` (True for the face crop_one keeps, by face_policy). An image that cannot be read or holds
        no face gives one row with crop_one's status and reason (face_index -1)."""
        loaded = self._load(path, frame_index)
        if isinstance(loaded, dict):
            return [dict(loaded, face_index=-1, primary=False)]
        bgr, factor = loaded
        faces = detect_faces(self.mtcnn, bgr, self.min_face_prob)
        if not faces:
            return [dict(self._no_face(), face_index=-1, primary=False)]
        primary = pick_face(faces, self.face_policy)
        order = sorted(range(len(faces)), key=lambda i: (float(faces[i].box[0]), float(faces[i].box[1])))
        # A face too small to crop still says which face it is (prepare's reject rows leave these fields blank).
        return [dict(self._crop(bgr, factor, faces[i]), box=[float(v) * factor for v in faces[i].box],
                     face_prob=faces[i].prob, n_faces=len(faces), face_index=k, primary=i == primary)
                for k, i in enumerate(order)]

    def _blank(self) -> dict:
        return dict(image=b"", height=0, width=0, box=[0.0] * 4, face_prob=0.0, landmarks=[0.0] * 10, n_faces=0,
                    phash=b"")

    def _load(self, path: str, frame_index: int) -> tuple[np.ndarray, int] | dict:
        """(BGR pixels, reduction factor) of an image or video frame big enough to hold a face, or a failure row."""
        try:
            if frame_index >= 0:
                bgr, factor = read_video_frame(path, frame_index), 1
            else:
                with open(path, "rb") as fh:
                    data = fh.read()
                bgr, factor = decode_image(data)
        except OSError as exc:
            return {**self._blank(), "status": schema.STATUS_UNREADABLE,
                    "reason": f"cannot read file: {exc.strerror or exc}"}
        except BadImage as exc:
            return {**self._blank(), "status": exc.status, "reason": str(exc)}
        h, w = bgr.shape[0] * factor, bgr.shape[1] * factor
        if min(h, w) < self.min_face_px:
            return {**self._blank(), "status": schema.STATUS_TOO_SMALL,
                    "reason": f"image {w}x{h} px is smaller than the minimum face size of {self.min_face_px} px"}
        return bgr, factor

    def _no_face(self) -> dict:
        return {**self._blank(), "status": schema.STATUS_NO_FACE,
                "reason": f"MTCNN found no face with probability >= {self.min_face_prob}"}

    def _crop(self, bgr: np.ndarray, factor: int, face: Face) -> dict:
        """The crop row of one detected face, or a too_small row when its box is under the minimum face size."""
        fw, fh_ = (face.box[2] - face.box[0]) * factor, (face.box[3] - face.box[1]) * factor
        if min(fw, fh_) < self.min_face_px:
            return {**self._blank(), "status": schema.STATUS_TOO_SMALL,
                    "reason": f"face box {fw:.0f}x{fh_:.0f} px is under the minimum of {self.min_face_px} px"}
        crop = square_crop(bgr, face.box, self.margin, self.crop_size_px)
        return dict(image=encode_png(crop), height=crop.shape[0], width=crop.shape[1],
                    box=[float(v) * factor for v in face.box], face_prob=face.prob,
                    landmarks=[float(v) * factor for v in face.landmarks.reshape(-1)], n_faces=face.n_faces,
                    phash=dhash(crop), status=schema.STATUS_OK, reason="")

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = []
        for row in batch.select(INPUT_COLUMNS).to_pylist():
            rows.append({**row, **self.crop_one(unescape_path(row["path"]), row["frame_index"])})
        table = pa.Table.from_pylist(rows, schema=PART)
        if self.parts_dir is not None:
            write_part(table, self.parts_dir)
        return table.select(OUTCOME_COLUMNS)


def write_part(table: pa.Table, parts_dir: Location) -> Location:
    """Write one batch's results as parts_dir/part-<hash of its sample ids>.parquet, atomically (a part is whole or
    absent, even if the process is killed mid-write)."""
    ids = "\n".join(sorted(table.column("sample_id").to_pylist()))
    path = parts_dir / f"part-{hashlib.sha256(ids.encode()).hexdigest()[:20]}.parquet"
    path.write_parquet(table)
    return path
