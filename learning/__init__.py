"""halut learning: MADDNESS encoders, prototypes and LUTs; quantization to a hardware
program; the ``.halut`` model file.

Public API: :func:`learn`, :func:`quantize`, :class:`HalutModel`, :func:`save_model`,
:func:`load_model`, :class:`SavedModel`, :class:`HardwareProgram`, :class:`HalutError`.
"""

from learning.errors import HalutError
from learning.maddness import learn
from learning.model import HalutModel
from learning.modelfile import SavedModel, load_model, save_model
from learning.program import HardwareProgram
from learning.quantize import quantize

__all__ = ["HalutError", "HalutModel", "HardwareProgram", "SavedModel", "learn",
           "load_model", "quantize", "save_model"]
