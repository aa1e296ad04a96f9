"""Export to a bit-packed inference engine: XNOR + popcount over 64-bit words on the CPU.

``export_run`` / ``export_network`` fold BNs and weight scales into per-channel
thresholds and affine terms, pack binary weights 1 bit each and write a versioned,
checksummed ``.bnn`` file; ``load_packed`` rebuilds the network around packed convs
that run native C kernels (or a portable torch fallback, announced at load).
"""

from bnn_nas.export.architecture import Architecture, InputSpec
from bnn_nas.export.convert import Conversion, PackedLayer, pack_model
from bnn_nas.export.exporter import ExportSummary, export_network, export_run
from bnn_nas.export.fileformat import FORMAT_VERSION, read_bnn, write_bnn
from bnn_nas.export.kernels import ConvGeometry, NativeBackend, TorchBackend, select_backend
from bnn_nas.export.loader import PackedNetwork, load_packed
from bnn_nas.export.modules import PackedConv2d, PackedFactorizedReduce, PackedUnit, set_backend
from bnn_nas.export.reference import exact_reference

__all__ = [
    "FORMAT_VERSION",
    "Architecture",
    "ConvGeometry",
    "Conversion",
    "ExportSummary",
    "InputSpec",
    "NativeBackend",
    "PackedConv2d",
    "PackedFactorizedReduce",
    "PackedLayer",
    "PackedNetwork",
    "PackedUnit",
    "TorchBackend",
    "exact_reference",
    "export_network",
    "export_run",
    "load_packed",
    "pack_model",
    "read_bnn",
    "select_backend",
    "set_backend",
    "write_bnn",
]
