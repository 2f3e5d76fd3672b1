"""Image-level supervision only: a dataset whose samples carry no pixel mask.

CAM methods learn from image labels; :class:`LabelsOnly` derives each sample's label (the
dataset reads it from the XML or the mask, as always) and loads no mask (the dataset reads one
only for a label it does not know yet), so no crop, flip or batch of a CAM method ever holds
ground-truth pixels.
"""

from .maps import raw_sample
from .transforms import apply_transform


class LabelsOnly:
    """``dataset`` (built without transform) with ``mask = None``, then ``transform``; other
    attributes (``ids``, ``class_names``, ``num_classes``, ``root``) are the dataset's."""

    def __init__(self, dataset, transform=None):
        if getattr(dataset, "transform", None) is not None:
            raise ValueError("LabelsOnly applies its own transform: build the dataset without one")
        self.dataset = dataset
        self.transform = transform

    def __getattr__(self, name):
        if name == "dataset":  # not set yet (unpickling in a DataLoader worker)
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        sample = apply_transform(self.transform, {**raw_sample(self.dataset, index, with_mask=False), "mask": None})
        sample["mask"] = None  # the transform's ToTensor fills an absent mask with 255: drop it
        return sample
