"""Reading whole-slide images: one interface over openslide and tiffslide."""

from slidestream.io.discovery import SLIDE_SUFFIXES, SlideEntry, find_slide_entries, find_slides
from slidestream.io.geometry import MPP_TOLERANCE, ReadPlan, choose_level, plan_read
from slidestream.io.open import BACKENDS, open_slide
from slidestream.io.slide import Slide, SlideSpec, resize_rgb

__all__ = [
    "BACKENDS",
    "MPP_TOLERANCE",
    "SLIDE_SUFFIXES",
    "ReadPlan",
    "Slide",
    "SlideEntry",
    "SlideSpec",
    "choose_level",
    "find_slide_entries",
    "find_slides",
    "open_slide",
    "plan_read",
    "resize_rgb",
]
