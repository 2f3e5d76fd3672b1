"""Text reports of evaluation results: per-class table, threshold curve, protocol notes."""

#: Standard split sizes papers report on; a different count means numbers are not comparable.
STANDARD_SPLITS = {
    "voc": {"train": 1464, "train_aug": 10582, "val": 1449, "test": 1456},
    "coco": {"train": 82783, "train2014": 82783, "val": 40504, "val2014": 40504},
}


def format_table(result):
    """Per-class table: IoU, precision, recall, FP and FN ratios (+ contour F when present)."""
    contour = (result.get("contour_f") or {}).get("per_class", {})
    per_class = result["per_class"]
    width = max([len("class")] + [len(n) for n in per_class])
    cols = ["IoU", "prec", "recall", "FP", "FN"] + (["cF"] if contour else [])
    lines = [f"{'class':<{width}} " + " ".join(f"{c:>7}" for c in cols)]
    for name, s in per_class.items():
        vals = [s["iou"], s["precision"], s["recall"], s["fp"], s["fn"]]
        if contour:
            vals.append(contour[name]["f"] if name in contour else None)
        lines.append(f"{name:<{width}} " + " ".join(f"{'-':>7}" if v is None else f"{v:7.2f}" for v in vals))
    lines.append("-" * len(lines[0]))
    lines.append(f"{'mIoU':<{width}} {result['miou']:7.2f}   (foreground only {result['miou_foreground']:.2f}; "
                 f"mean FP {result['mean_fp_foreground']:.2f}, FN {result['mean_fn_foreground']:.2f} "
                 f"over foreground classes)")
    if result.get("contour_f"):
        cf = result["contour_f"]
        lines.append(f"{'contour F':<{width}} {cf['mean_f']:7.2f}   (definition {cf['definition']!r}, "
                     f"mean over {len(cf['per_class'])} foreground classes)")
    if result.get("absent_classes"):
        lines.append(f"note: {len(result['absent_classes'])} class(es) absent from both ground truth and "
                     f"prediction score IoU 0 and count in the mean (as in the references): "
                     f"{', '.join(result['absent_classes'])}")
    return "\n".join(lines)


def format_curve(result):
    """One line per threshold of a CAM sweep, best marked with '*'."""
    lines = ["threshold  mIoU    FP     FN"]
    for point in result.get("curve", []):
        mark = " *" if point["threshold"] == result["threshold"] else ""
        lines.append(f"{point['threshold']:9.2f} {point['miou']:6.2f} {point['mean_fp_foreground']:6.2f} "
                     f"{point['mean_fn_foreground']:6.2f}{mark}")
    return "\n".join(lines)


def protocol_notes(dataset, split, num_images, mode, num_thresholds=0):
    """Protocol pitfalls that make numbers incomparable with papers, as short lines."""
    notes = []
    expected = STANDARD_SPLITS.get(dataset, {}).get(split)
    if expected is None:
        notes.append(f"split size: {dataset}/{split} has {num_images} images (no standard size known; "
                     f"VOC papers report CAMs / pseudo masks on train = 1464, NOT train_aug = 10582, "
                     f"and segmentation on val = 1449 / test = 1456)")
    elif expected != num_images:
        notes.append(f"split size: {dataset}/{split} has {num_images} images but the standard split has "
                     f"{expected}: not comparable with published numbers")
    else:
        notes.append(f"split size: {dataset}/{split} = {num_images} images (the standard split)")
    if mode == "cam":
        notes.append("CAM vs mask: these are raw CAMs (background threshold + argmax); pseudo masks "
                     "(random walk, CRF) and segmentation predictions score higher: compare like with like")
    elif mode == "png":
        notes.append("CAM vs mask: label maps are scored as given; say which stage produced them "
                     "(thresholded CAM, pseudo mask, segmentation; with or without CRF)")
    if num_thresholds > 1:
        notes.append(f"threshold tuned on GT: the best of {num_thresholds} thresholds was picked on this "
                     f"split's ground truth (optimistic); report it and keep it fixed elsewhere")
    return ["protocol: " + n for n in notes]
