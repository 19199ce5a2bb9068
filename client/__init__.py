"""ADNet client side: HDR conventions and metrics (hdr_math), image I/O (hdr_io).

Installable without torch. Submodules are imported explicitly (`from client import hdr_math`) so that the
export stages can share the HDR math without pulling in OpenCV or the Triton client.
"""
