"""The VOC-shaped data set of the side-by-side benchmarks against the reference implementations.

Synthetic scenes (``wsss.data.synthetic``) rendered at 500 px and cut to VOC's typical
500 x 375, written in the VOC 2012 layout that both wsss and the references read:

    root/JPEGImages/<id>.jpg               JPEG (quality 90), 500 x 375
    root/SegmentationClass/<id>.png        palette PNG, synthetic class c -> VOC class c (1..8)
    root/Annotations/<id>.xml              object names (P-NOC reads image labels from these)
    root/ImageSets/Segmentation/<split>.txt
    root/cams/<id>.npz and root/cams_npy/<id>.npy
                                           CAM-like hints of the training split (blurred class
                                           masks), in wsss's and in P-NOC's format, for C2AM-H

No ``class_names.txt``: wsss then uses the 20 VOC classes, as the references do, so both
train 20-way classifiers. Images whose crop holds no foreground are skipped (P-NOC's
classification dataset would silently replace them by the next image).

    python benchmarks/ref_data.py --out /tmp/bench_voc --train 128 --val 32
"""

import argparse
import sys
from pathlib import Path
from xml.sax.saxutils import escape

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from wsss.data.io import save_cam, save_index_png, write_text  # noqa: E402
from wsss.data.synthetic import render_sample  # noqa: E402
from wsss.data.voc import VOC_CLASSES  # noqa: E402

HEIGHT, WIDTH = 375, 500


def voc_xml(image_id, mask, classes):
    """A minimal VOC annotation: one ``<object>`` per class present (0-based foreground indices),
    with the bounding box of the class's pixels (P-NOC's XML reader needs one)."""
    objects = ""
    for c in classes:
        ys, xs = np.nonzero(mask == c + 1)
        box = (f"<bndbox><xmin>{xs.min()}</xmin><ymin>{ys.min()}</ymin><xmax>{xs.max()}</xmax>"
               f"<ymax>{ys.max()}</ymax></bndbox>")
        objects += f"<object><name>{escape(VOC_CLASSES[c])}</name><difficult>0</difficult>{box}</object>"
    return (f"<annotation><filename>{image_id}.jpg</filename><size><width>{WIDTH}</width>"
            f"<height>{HEIGHT}</height><depth>3</depth></size>{objects}</annotation>\n")


def cam_like(mask, classes):
    """(K, H, W) float32 maps of the present classes: each class mask blurred and max-normalised."""
    maps = []
    for c in classes:
        m = cv2.GaussianBlur((mask == c + 1).astype(np.float32), (0, 0), 12)
        maps.append(m / max(float(m.max()), 1e-5))
    return np.stack(maps)


def write_sample(root, image_id, image, mask, with_cams):
    classes = [int(v) - 1 for v in np.unique(mask) if 0 < v < 255]
    Image.fromarray(image).save(root / "JPEGImages" / f"{image_id}.jpg", quality=90)
    save_index_png(root / "SegmentationClass" / f"{image_id}.png", mask)
    write_text(root / "Annotations" / f"{image_id}.xml", voc_xml(image_id, mask, classes))
    if with_cams:
        hr = cam_like(mask, classes)
        st = cv2.resize(hr.transpose(1, 2, 0), ((WIDTH + 3) // 4, (HEIGHT + 3) // 4),
                        interpolation=cv2.INTER_LINEAR).reshape((HEIGHT + 3) // 4, (WIDTH + 3) // 4, -1)
        save_cam(root / "cams" / f"{image_id}.npz", classes, st.transpose(2, 0, 1), hr)
        # P-NOC's inference format: keys with the background 0 in front, cam at stride 4, hr_cam
        np.save(root / "cams_npy" / f"{image_id}.npy",
                {"keys": np.pad(np.asarray(classes) + 1, (1, 0)), "cam": st.transpose(2, 0, 1), "hr_cam": hr})


def labels_of(root, splits=("train", "val")):
    """``{id: float32 (20,) multi-hot}`` of the bench images from their masks (psa's ``cls_labels.npy``)."""
    out = {}
    for split in splits:
        for image_id in (Path(root) / "ImageSets" / "Segmentation" / f"{split}.txt").read_text().split():
            mask = np.asarray(Image.open(Path(root) / "SegmentationClass" / f"{image_id}.png"))
            label = np.zeros(len(VOC_CLASSES), np.float32)
            label[[int(v) - 1 for v in np.unique(mask) if 0 < v < 255]] = 1
            out[image_id] = label
    return out


def make_bench_set(out, n_train=128, n_val=32, seed=0):
    """Write the data set to ``out`` (kept if it already holds the same counts); returns ``out``."""
    root = Path(out)
    stamp = root / "bench_set.txt"
    want = f"seed {seed} train {n_train} val {n_val} {WIDTH}x{HEIGHT} ids v2\n"
    if stamp.is_file() and stamp.read_text() == want:
        return root
    for sub in ("JPEGImages", "SegmentationClass", "Annotations", "ImageSets/Segmentation", "cams", "cams_npy"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    top = (500 - HEIGHT) // 2
    for split, n in (("train", n_train), ("val", n_val)):
        ids, index = [], 0
        while len(ids) < n:
            s = render_sample(seed, index, size=500, split=split)
            index += 1
            image, mask = s.image[top:top + HEIGHT], s.mask[top:top + HEIGHT]
            if not ((mask > 0) & (mask < 255)).any():
                continue
            image_id = f"{split[:3]}_{index:07d}"  # 11 characters, like VOC's ids: psa-style lists slice [-15:-4]
            write_sample(root, image_id, np.ascontiguousarray(image), np.ascontiguousarray(mask), split == "train")
            ids.append(image_id)
        write_text(root / "ImageSets" / "Segmentation" / f"{split}.txt", "\n".join(ids) + "\n")
        if split == "train":  # a one-batch split (the ordinary classifier P-NOC starts from)
            write_text(root / "ImageSets" / "Segmentation" / "train8.txt", "\n".join(ids[:8]) + "\n")
    write_text(stamp, want)
    return root


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--train", type=int, default=128)
    ap.add_argument("--val", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    print(make_bench_set(args.out, args.train, args.val, args.seed))


if __name__ == "__main__":
    main()
