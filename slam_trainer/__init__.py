"""slam-trainer: selective language alignment (SLAM) and multilingual unification learning (L²) for HF trainers."""

__version__ = "0.1.0.dev0"

__all__ = ["__version__"]
