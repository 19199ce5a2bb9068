"""ADNet client side, installable without torch (`pip install .` installs this package alone as adnet-client).

- contract: the public tensor contract of the Triton model `adnet`;
- hdr_math, hdr_io: HDR conventions and metrics (numpy), image and exposure files (OpenCV);
- scenes: scenes from NTIRE / Kalantari folders or three files + EVs; synthetic: generated scenes with ground truth;
- infer: the gRPC client (HDRClient); outputs: .hdr/.exr/preview/NTIRE files and metrics;
- `python -m client`: the CLI (client/__main__.py).

Submodules are imported explicitly (`from client import hdr_math`) so that the export stages can share the HDR math
without pulling in OpenCV or the Triton client.
"""
