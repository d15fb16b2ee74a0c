"""Dataset layouts: where a root keeps its real and fake files, and whether it brings its own split.

A layout maps a root to class folders. `auto` tries them in order; a name forces one. Adding a layout is one
function and one entry of LAYOUTS.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable


@dataclass(frozen=True)
class ClassFolder:
    path: Path
    label: int  # 0 real, 1 fake
    split: str = ""  # the dataset's own split (train|val|test) where it has one


def _generic(root: Path) -> list[ClassFolder] | None:
    """root/real and root/fake, any depth below them."""
    if (root / "real").is_dir() and (root / "fake").is_dir():
        return [ClassFolder(root / "real", 0), ClassFolder(root / "fake", 1)]
    return None


def _ciplab(root: Path) -> list[ClassFolder] | None:
    """Kaggle ciplab/real-and-fake-face-detection: real_and_fake_face/training_real and .../training_fake.

    The download also holds a second copy one level deeper (real_and_fake_face_detection/...); the shallowest
    pair is used, so the copy is not read twice.
    """
    for depth in range(3):
        for cand in sorted(root.glob("/".join(["*"] * depth)) if depth else [root]):
            if (cand / "training_real").is_dir() and (cand / "training_fake").is_dir():
                return [ClassFolder(cand / "training_real", 0), ClassFolder(cand / "training_fake", 1)]
    return None


_MANJIL_SPLITS = {"Train": "train", "Validation": "val", "Test": "test"}


def _manjilkarki(root: Path) -> list[ClassFolder] | None:
    """Kaggle manjilkarki/deepfake-and-real-images: Dataset/{Train,Validation,Test}/{Real,Fake}."""
    base = root / "Dataset" if (root / "Dataset").is_dir() else root
    folders = [ClassFolder(base / split / cls, label, ours)
               for split, ours in _MANJIL_SPLITS.items() for cls, label in (("Real", 0), ("Fake", 1))
               if (base / split / cls).is_dir()]
    return folders if {f.label for f in folders} == {0, 1} else None


LAYOUTS: dict[str, Callable[[Path], list[ClassFolder] | None]] = {
    "generic": _generic,
    "ciplab": _ciplab,
    "manjilkarki": _manjilkarki,
}
EXPECTED = {
    "generic": "ROOT/real/ and ROOT/fake/",
    "ciplab": "ROOT/real_and_fake_face/training_real/ and .../training_fake/",
    "manjilkarki": "ROOT/Dataset/{Train,Validation,Test}/{Real,Fake}/",
}


def resolve_layout(root: Path, layout: str = "auto") -> tuple[str, list[ClassFolder]] | tuple[None, str]:
    """(name, class folders) of the first layout that matches (or the forced one); (None, why) when none does."""
    if layout != "auto" and layout not in LAYOUTS:
        return None, f"unknown layout {layout!r}; valid: auto, {', '.join(LAYOUTS)}"
    for name in (LAYOUTS if layout == "auto" else [layout]):
        folders = LAYOUTS[name](root)
        if folders:
            return name, folders
    wanted = EXPECTED if layout == "auto" else {layout: EXPECTED[layout]}
    return None, "expected " + " or ".join(f"{v} ({k})" for k, v in wanted.items())
